//! The catalog read, expanded, validated and compiled: the documented example (the one the
//! README shows), generators, owners, and the `file:line: key: reason` of every kind of problem.

use slipway_catalog::model::{Policy, TargetKind};
use slipway_catalog::{DirTree, Invalid, build};
use std::collections::BTreeMap;
use std::path::Path;

fn example() -> DirTree {
    DirTree(Path::new(env!("CARGO_MANIFEST_DIR")).join("example"))
}

/// acme/mono's tree: three app directories with a Dockerfile, one without, one excluded.
fn mono(repo: &str) -> Option<Vec<String>> {
    (repo == "acme/mono").then(|| {
        [
            "apps/writer/Dockerfile",
            "apps/search/Dockerfile",
            "apps/search/src/main.rs",
            "apps/billing/Dockerfile",
            "apps/docs-only/README.md",
            "apps/experimental-x/Dockerfile",
            "apps/nested/deeper/Dockerfile",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    })
}

#[test]
fn the_example_compiles_with_includes_generators_and_owners() {
    let catalog = build(&example(), "slipway.yaml", &mono).expect("valid");
    assert_eq!(catalog.files, ["slipway.yaml", "teams/payments/slipway.yaml"]);
    let names: Vec<&str> = catalog.apps.keys().map(String::as_str).collect();
    assert_eq!(names, ["billing", "ledger", "reader", "search", "writer"], "generated, explicit and included");

    // writer is explicit: the generator's writer does not replace it.
    let writer = &catalog.apps["writer"];
    assert_eq!(writer.build.context, "apps/writer");
    assert_eq!(writer.origin, "slipway.yaml: apps[0]");
    assert_eq!(writer.stages[1].deploy.path, "apps/writer/staging/kustomization.yaml");
    let search = &catalog.apps["search"];
    assert_eq!(search.source.paths, ["apps/search/**"]);
    assert_eq!((search.image.as_str(), search.deploy_kind()), ("registry.example/acme/search", TargetKind::Helm));
    assert_eq!(search.stages[2].deploy.key.as_deref(), Some("image.tag"), "helm's default key");
    assert!(search.origin.contains("generators[0] (acme/mono: apps/search)"), "{}", search.origin);

    // reader: a yaml target with a value template, and prod in another repository.
    let reader = &catalog.apps["reader"];
    assert_eq!(reader.stages[0].deploy.value.as_deref(), Some("{image}@{digest}"));
    assert_eq!(reader.stages[0].deploy.repository, "git@github.com:acme/deploy.git");
    assert_eq!(reader.stages[2].deploy.repository, "git@github.com:acme/deploy-prod.git");
    assert_eq!(reader.clone_url, "https://github.com/acme/mono.git");
}

trait Kind {
    fn deploy_kind(&self) -> TargetKind;
}

impl Kind for slipway_catalog::CompiledApp {
    fn deploy_kind(&self) -> TargetKind {
        self.stages[0].deploy.kind
    }
}

#[test]
fn owners_decide_per_app_and_two_pipelines_stand_side_by_side() {
    let catalog = build(&example(), "slipway.yaml", &mono).expect("valid");
    // alice (payments) approves ledger's staging, not writer's; quinn (qa) the other way round.
    assert!(catalog.may_approve("ledger", "staging", "alice"));
    assert!(!catalog.may_approve("writer", "staging", "alice"));
    assert!(catalog.may_approve("writer", "staging", "quinn"));
    assert!(!catalog.may_approve("ledger", "staging", "quinn"), "replace: qa no longer approves ledger");
    assert_eq!(catalog.approvers("writer", "staging"), ["team:qa"]);
    assert_eq!(catalog.approvers("ledger", "prod"), ["team:sre", "team:payments"], "add: sre stays");
    assert!(catalog.may_approve("ledger", "prod", "root"), "admins may");
    assert!(!catalog.may_approve("ledger", "nowhere", "root"));

    // reader goes to prod by itself after a soak; writer needs two approvals.
    let prod = |app: &str| catalog.apps[app].stages[2].stage.clone();
    assert_eq!((prod("reader").policy, prod("reader").soak_secs), (Policy::Auto, 3600));
    assert_eq!((prod("writer").policy, prod("writer").approvals), (Policy::Approval, 2));
}

#[test]
fn without_a_source_tree_generators_are_listed_not_expanded() {
    let catalog = build(&example(), "slipway.yaml", &|_| None).expect("valid");
    assert_eq!(catalog.unexpanded, ["slipway.yaml: generators[0] (acme/mono)"]);
    assert_eq!(catalog.apps.len(), 3);
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
}

fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let Err(Invalid(problems)) = build(&tree(files), "slipway.yaml", &mono) else { panic!("expected problems") };
    problems.iter().map(ToString::to_string).collect()
}

const BASE: &str = "\
include: [\"teams/*.yaml\"]
teams:
  qa: { members: [quinn] }
pipelines:
  p:
    stages:
      - name: dev
        policy: auto
      - name: prod
        policy: approval
        teams: [qa]
apps:
  - name: a
    source: { repository: acme/mono, paths: [\"apps/a/**\"] }
    image: reg.example/acme/a
    deploy: { repository: git://h/d, path: \"{stage}/a.yaml\", kind: kustomize }
    pipeline: p
";

#[test]
fn a_valid_base() {
    assert!(build(&tree(&[("slipway.yaml", BASE)]), "slipway.yaml", &mono).is_ok());
}

#[test]
fn problems_name_file_line_key_and_reason() {
    let typo = BASE.replace("    pipeline: p", "    pipline: p");
    let found = problems(&[("slipway.yaml", &typo)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("slipway.yaml:17: apps[0]: unknown field `pipline`"), "{found:?}");

    let unknown = BASE.replace("    pipeline: p", "    pipeline: fast");
    assert_eq!(
        problems(&[("slipway.yaml", &unknown)]),
        ["slipway.yaml:17: apps[0].pipeline: pipeline \"fast\" is not defined (pipelines: [\"p\"])"]
    );

    let team_file = "apps:\n  - name: a\n    source: { repository: acme/mono, paths: [x] }\n    image: r/a\n    \
                     deploy: { repository: r, path: p.yaml, kind: helm }\n    pipeline: p\n    team: ops\n";
    assert_eq!(
        problems(&[("slipway.yaml", BASE), ("teams/ops.yaml", team_file)]),
        ["teams/ops.yaml:2: apps[0].name: app a is also declared at slipway.yaml: apps[0]",]
    );
    let team_file = team_file.replace("name: a", "name: b");
    assert_eq!(
        problems(&[("slipway.yaml", BASE), ("teams/ops.yaml", &team_file)]),
        ["teams/ops.yaml:7: apps[0].team: team \"ops\" is not defined in teams"]
    );

    let twice = "teams:\n  qa: { members: [x] }\n";
    assert_eq!(
        problems(&[("slipway.yaml", BASE), ("teams/qa.yaml", twice)]),
        ["teams/qa.yaml:2: teams.qa: team \"qa\" is also defined in slipway.yaml"]
    );

    let no_approver = BASE.replace("        teams: [qa]\n", "");
    let found = problems(&[("slipway.yaml", &no_approver)]);
    assert_eq!(
        found,
        [
            "slipway.yaml:12: apps[0].owners: stage prod needs approval, and neither pipeline p nor the app names who may approve"
        ]
    );

    let bad_owner = BASE.replace("    pipeline: p\n", "    pipeline: p\n    owners:\n      qa: { teams: [qa] }\n");
    let found = problems(&[("slipway.yaml", &bad_owner)]);
    assert_eq!(
        found,
        ["slipway.yaml:19: apps[0].owners.qa: stage \"qa\" is not in pipeline \"p\" ([\"dev\", \"prod\"])"]
    );

    let zone = BASE.replace(
        "        teams: [qa]\n",
        "        teams: [qa]\n        freeze: [{ start: \"25:00\", end: \"01:00\" }]\n",
    );
    let found = problems(&[("slipway.yaml", &zone)]);
    assert_eq!(found, ["slipway.yaml:12: pipelines.p.stages[1].freeze[0]: start: \"25:00\" is not HH:MM"]);

    let checks = BASE.replace(
        "        teams: [qa]\n",
        "        teams: [qa]\n        verification:\n          - web: { name: smoke, url: \"http://{app}.{stage}/healthz\" }\n          \
         - prometheus: { name: smoke, address: \"http://prom:9090\", query: up, successCondition: \"result[0] >=\" }\n",
    );
    let found = problems(&[("slipway.yaml", &checks)]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("slipway.yaml:14: pipelines.p.stages[1].verification[1].count: is required"),
        "{found:?}"
    );
    assert!(found[1].contains("pipelines.p.stages[1].verification[1].successCondition: "), "{found:?}");
    assert!(found[2].ends_with("pipelines.p.stages[1].verification[1].name: two checks of this stage share this name"));

    let args = BASE.replace(
        "    image: reg.example/acme/a\n",
        "    build: { args: { \"BAD-NAME\": x } }\n    image: reg.example/acme/a\n",
    );
    let found = problems(&[("slipway.yaml", &args)]);
    assert_eq!(
        found,
        ["slipway.yaml:15: apps[0].build.args: \"BAD-NAME\" is not a build argument name ([A-Za-z_][A-Za-z0-9_]*)"]
    );

    let broken = problems(&[("slipway.yaml", "apps: [\n")]);
    assert!(broken[0].starts_with("slipway.yaml:2: "), "{broken:?}");
    assert_eq!(problems(&[("other.yaml", "")]), ["slipway.yaml: no such file in the repository (or not UTF-8)"]);
}

#[test]
fn pull_requests_need_the_github_repository_and_key_paths_are_checked() {
    let pr = BASE.replace("        teams: [qa]\n", "        teams: [qa]\n        pull_request: true\n");
    let found = problems(&[("slipway.yaml", &pr)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("slipway.yaml:17: apps[0].deploy.github_repository: stage prod opens pull requests"),
        "{found:?}"
    );
    let named = pr.replace("kind: kustomize }", "kind: kustomize, github_repository: acme/deploy }");
    let catalog = build(&tree(&[("slipway.yaml", &named)]), "slipway.yaml", &mono).expect("named");
    assert_eq!(catalog.apps["a"].stages[1].deploy.github_repository.as_deref(), Some("acme/deploy"));
    let on_github = pr.replace("git://h/d", "https://github.com/acme/deploy.git");
    let catalog = build(&tree(&[("slipway.yaml", &on_github)]), "slipway.yaml", &mono).expect("on github");
    assert_eq!(catalog.apps["a"].stages[1].deploy.github_repository.as_deref(), Some("acme/deploy"));

    let yaml = BASE.replace("kind: kustomize }", "kind: yaml, key: \"spec.params[name=image\" }");
    let found = problems(&[("slipway.yaml", &yaml)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("slipway.yaml:16: apps[0].deploy.key: \"spec.params[name=image\" is not a key path"),
        "{found:?}"
    );
}

#[test]
fn a_generated_app_with_a_problem_names_its_directory() {
    let generator = "generators:\n  - directory: { repository: acme/mono, glob: \"apps/*\" }\n    template:\n      \
                     source: { repository: acme/mono, paths: [\"{dir}/**\"] }\n      image: reg.example/{name}\n      \
                     deploy: { repository: r, path: \"{app}.yaml\", kind: yaml }\n      pipeline: p\n";
    let found = problems(&[("slipway.yaml", &format!("{BASE}{generator}"))]);
    assert!(found.len() >= 3, "one per generated app: {found:?}");
    assert!(
        found.iter().any(|p| p.contains("generators[0].template.deploy.key: kind yaml needs the key path to write (app search from slipway.yaml: generators[0] (acme/mono: apps/search))")),
        "{found:?}"
    );
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("slipway.schema.json");
    let generated = slipway_catalog::schema_text();
    if std::env::var_os("SLIPWAY_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "slipway.schema.json is not what the types generate; run SLIPWAY_WRITE_SCHEMA=1 cargo test -p slipway-catalog"
    );
    let schema = slipway_catalog::schema();
    assert!(schema["properties"]["apps"].is_object() && schema["$defs"]["Stage"].is_object(), "{schema}");
}
