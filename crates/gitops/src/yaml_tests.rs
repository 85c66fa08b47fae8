use super::*;
use slipway_mesh::names::ImageTag;

fn tag(t: &str) -> ImageChange {
    ImageChange { tag: Some(ImageTag::parse(t).expect("tag")), ..ImageChange::default() }
}

fn digest() -> String {
    format!("sha256:{}", "d".repeat(64))
}

/// `before` with exactly one occurrence of `old` replaced by `new`.
fn only(before: &str, old: &str, new: &str) -> String {
    assert_eq!(before.matches(old).count(), 1, "{old:?} must occur once");
    before.replacen(old, new, 1)
}

const KUSTOMIZATION: &str = "\
# Managed by Slipway; edit freely.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:   [deployment.yaml, service.yaml]   # flow list

images:
     # five-space indent, comment inside the list
     - name: writer   # the writer image
       newName: registry.local:5000/acme/writer
       newTag: \"1.0.0\"      # double-quoted, trailing comment
     -   name: reader
         newTag: 'v7'
     - {name: flowy, newTag: v1}
";

#[test]
fn kustomize_double_quoted_tag_changes_alone() {
    let out = set_kustomize_image(KUSTOMIZATION, "writer", &tag("1.0.1")).expect("edit");
    assert_eq!(out, only(KUSTOMIZATION, "\"1.0.0\"", "\"1.0.1\""));
}

#[test]
fn kustomize_single_quoted_tag_changes_alone() {
    let out = set_kustomize_image(KUSTOMIZATION, "reader", &tag("v8")).expect("edit");
    assert_eq!(out, only(KUSTOMIZATION, "'v7'", "'v8'"));
}

#[test]
fn kustomize_flow_entry_changes_alone() {
    let out = set_kustomize_image(KUSTOMIZATION, "flowy", &tag("v2")).expect("edit");
    assert_eq!(out, only(KUSTOMIZATION, "newTag: v1}", "newTag: v2}"));
}

#[test]
fn kustomize_flow_sequence_of_flow_mappings() {
    let text = "images: [{name: a, newTag: \"1\"}, {name: b, newTag: '2'}]  # pinned\nx: 1\n";
    let out = set_kustomize_image(text, "b", &tag("3")).expect("edit");
    assert_eq!(out, "images: [{name: a, newTag: \"1\"}, {name: b, newTag: '3'}]  # pinned\nx: 1\n");
    let out = set_kustomize_image(text, "c", &tag("v4")).expect("add");
    assert_eq!(
        out,
        "images: [{name: a, newTag: \"1\"}, {name: b, newTag: '2'}, {name: c, newTag: v4}]  # pinned\nx: 1\n"
    );
}

#[test]
fn kustomize_new_name_and_digest() {
    let change = ImageChange {
        new_name: Some("registry.local:5000/acme/writer2".into()),
        tag: Some(ImageTag::parse("1.0.1").expect("tag")),
        digest: Some(digest()),
    };
    let out = set_kustomize_image(KUSTOMIZATION, "writer", &change).expect("edit");
    let expected = only(KUSTOMIZATION, "acme/writer\n", "acme/writer2\n");
    let expected = only(
        &expected,
        "\"1.0.0\"      # double-quoted, trailing comment\n",
        &format!("\"1.0.1\"      # double-quoted, trailing comment\n       digest: {}\n", digest()),
    );
    assert_eq!(out, expected);
}

#[test]
fn kustomize_tag_drops_a_stale_digest() {
    let text = format!("images:\n- name: a\n  newTag: v1\n  digest: {}\n- name: b\n  newTag: v1\n", digest());
    let out = set_kustomize_image(&text, "a", &tag("v2")).expect("edit");
    assert_eq!(out, "images:\n- name: a\n  newTag: v2\n- name: b\n  newTag: v1\n");
}

#[test]
fn kustomize_adds_a_missing_entry_and_key() {
    let out = set_kustomize_image(KUSTOMIZATION, "new-one", &tag("2.0")).expect("edit");
    assert!(out.starts_with(KUSTOMIZATION.trim_end_matches('\n')), "{out}");
    assert!(out.contains("name: new-one"), "{out}");
    assert!(out.contains("newTag: '2.0'"), "a numeric-looking tag must stay a string: {out}");

    let text = "# c\nresources:\n- a.yaml\n";
    let out = set_kustomize_image(text, "a", &tag("v1")).expect("edit");
    assert_eq!(out, "# c\nresources:\n- a.yaml\nimages:\n- name: a\n  newTag: v1\n");
    let out = set_kustomize_image("images:\nresources: []\n", "a", &tag("v1")).expect("null images");
    assert!(out.contains("name: a") && out.contains("resources: []"), "{out}");
}

#[test]
fn kustomize_unchanged_value_is_untouched() {
    let out = set_kustomize_image(KUSTOMIZATION, "reader", &tag("v7")).expect("edit");
    assert_eq!(out, KUSTOMIZATION);
}

#[test]
fn kustomize_rejects_non_sequences() {
    assert!(set_kustomize_image("images: 3\n", "a", &tag("v1")).is_err());
    assert!(set_kustomize_image("- a\n- b\n", "a", &tag("v1")).is_err());
    assert!(set_kustomize_image("", "a", &tag("v1")).is_err());
}

const VALUES: &str = "\
# Helm values for writer
replicaCount: 2
image:
    repository: registry.local:5000/acme/writer   # where from
    tag: v1.2.3
    pullPolicy: IfNotPresent
sidecar: {image: {tag: \"s1\"}, enabled: true}
";

#[test]
fn helm_plain_tag_changes_alone() {
    let out = set_value(VALUES, "image.tag", "v1.2.4").expect("edit");
    assert_eq!(out, only(VALUES, "v1.2.3", "v1.2.4"));
}

#[test]
fn helm_flow_nested_tag_keeps_quotes() {
    let out = set_value(VALUES, "sidecar.image.tag", "s2").expect("edit");
    assert_eq!(out, only(VALUES, "\"s1\"", "\"s2\""));
}

#[test]
fn helm_plain_value_that_would_read_as_a_number_is_quoted() {
    let out = set_value(VALUES, "image.tag", "1.10").expect("edit");
    assert_eq!(out, only(VALUES, "v1.2.3", "\"1.10\""));
}

#[test]
fn helm_creates_missing_keys() {
    let out = set_value(VALUES, "image.digest", &digest()).expect("edit");
    let expected = only(VALUES, "IfNotPresent\n", &format!("IfNotPresent\n    digest: {}\n", digest()));
    assert_eq!(out, expected);
    let out = set_value("a: 1\n", "b.c", "v1").expect("edit");
    assert_eq!(out, "a: 1\nb:\n  c: v1\n");
    let out = set_value("image:\n  tag:\n  repo: x\n", "image.tag", "v2").expect("edit");
    assert_eq!(out, "image:\n  tag: v2\n  repo: x\n");
}

#[test]
fn helm_rejects_scalars_in_the_path() {
    assert!(set_value("image: nginx\n", "image.tag", "v1").is_err());
    assert!(set_value("image:\n  tag: [a]\n", "image.tag", "v1").is_err());
}

#[test]
fn quoting_rules() {
    for (old, value, want) in [
        ("\"x\"", "a\"b", "\"a\\\"b\""),
        ("'x'", "it's", "'it''s'"),
        ("x", "v1", "v1"),
        ("x", "1", "\"1\""),
        ("x", "1e3", "\"1e3\""),
        ("x", "0x1f", "\"0x1f\""),
        ("x", "true", "\"true\""),
        ("x", "No", "\"No\""),
        ("x", "sha256:ab", "sha256:ab"),
        ("x", "latest", "latest"),
        ("~", "v1", "v1"),
    ] {
        assert_eq!(render_like(old, value, false).as_deref(), Ok(want), "{old} <- {value}");
    }
    assert_eq!(render_like("x", "sha256:ab", true).as_deref(), Ok("\"sha256:ab\""));
    assert!(render_like("|", "x", false).is_err());
}

#[test]
fn validators() {
    assert!(validate_path("apps/writer/dev/kustomization.yaml").is_ok());
    for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/"] {
        assert!(validate_path(bad).is_err(), "{bad}");
    }
    assert!(validate_key_path("image.tag").is_ok());
    assert!(validate_key_path("image..tag").is_err());
    assert!(validate_digest(&digest()).is_ok());
    assert!(validate_digest("sha256:xyz").is_err());
    assert!(validate_image_name("registry.local:5000/acme/writer").is_ok());
    assert!(validate_image_name("a b").is_err());
}

#[test]
fn document_framing_is_kept() {
    for (text, want) in [
        ("---\nimages:\n- name: a\n  newTag: v1\n", "---\nimages:\n- name: a\n  newTag: v2\n"),
        ("images:\r\n- name: a\r\n  newTag: v1\r\n", "images:\r\n- name: a\r\n  newTag: v2\r\n"),
        ("images:\n- name: a\n  newTag: v1", "images:\n- name: a\n  newTag: v2"),
        (
            "%YAML 1.2\n---\nimages:\n- name: a\n  newTag: v1 # c\n...\n",
            "%YAML 1.2\n---\nimages:\n- name: a\n  newTag: v2 # c\n...\n",
        ),
        ("images:\n- name: a\n  newTag: &x v1\n", "images:\n- name: a\n  newTag: &x v2\n"),
    ] {
        assert_eq!(set_kustomize_image(text, "a", &tag("v2")).as_deref(), Ok(want), "{text:?}");
    }
    assert!(set_kustomize_image("a: 1\n---\nb: 2\n", "a", &tag("v2")).is_err(), "two documents");
}

#[test]
fn anchored_flow_mapping_edits_in_place() {
    let out = set_value("image: &i {tag: v1}\nother: *i\n", "image.tag", "v2");
    assert_eq!(out.as_deref(), Ok("image: &i {tag: v2}\nother: *i\n"));
}

/// An Argo CD Application as people write it: the entry is chosen by its `name`, only its
/// value changes, comments and the other entries stay.
const APPLICATION: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: reader-prod # the prod reader
spec:
  source:
    chart: reader
    helm:
      parameters:
        - name: replicas
          value: \"3\"
        - name: image.tag
          value: '1.3.0' # set by Slipway
";

#[test]
fn list_entries_are_chosen_by_a_field() {
    let out = set_value(APPLICATION, "spec.source.helm.parameters[name=image.tag].value", "1.4.0").expect("edit");
    assert_eq!(out, APPLICATION.replace("'1.3.0'", "'1.4.0'"));
    let flow = "spec:\n  params: [{ name: a, value: x }, { name: b, value: y }]\n";
    assert_eq!(set_value(flow, "spec.params[name=b].value", "z").expect("flow"), flow.replace("value: y", "value: z"));
}

#[test]
fn a_missing_list_entry_or_list_is_added() {
    let out = set_value(APPLICATION, "spec.source.helm.parameters[name=image.digest].value", "sha256:ab").expect("add");
    assert!(out.starts_with(APPLICATION), "the rest is kept:\n{out}");
    let added = &out[APPLICATION.len()..];
    assert!(added.contains("name: image.digest") && added.contains("value: sha256:ab"), "{added}");
    let reread = set_value(&out, "spec.source.helm.parameters[name=image.digest].value", "sha256:cd").expect("again");
    assert_eq!(reread, out.replace("sha256:ab", "sha256:cd"), "found the second time, not added twice");

    let out = set_value("spec: {}\n", "spec.containers[name=web].image", "r/web:1").expect("new list");
    let check = set_value(&out, "spec.containers[name=web].image", "r/web:1").expect("idempotent");
    assert_eq!(check, out);
    assert!(out.contains("name: web") && out.contains("image: r/web:1"), "{out}");
}

#[test]
fn a_selector_on_something_that_is_not_a_list_is_refused() {
    let e = set_value(APPLICATION, "spec.source[name=x].value", "v").expect_err("a mapping");
    assert!(e.contains("`source[name=x]`") && e.contains("not a list"), "{e}");
}
