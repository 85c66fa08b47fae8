//! The supply-chain step of the builder against real nats-server, PostgreSQL, the Distribution
//! registry, git daemon, buildah and Syft: a `FROM scratch` image carrying an apk package
//! database is built and pushed, Syft's CycloneDX SBOM of it is stored in the registry next to
//! the image and read back by digest, and the scanner's report becomes `build.scanned`. The
//! scanner is the one stand-in (neither Trivy nor Grype can fetch a database here): a script
//! that prints a real Trivy report, fails, prints garbage or hangs, as the test says. Re-scan
//! requests (`scan.requested`) are answered on the same digest, failures as `build.scan-failed`.

mod common;

use common::{Builder, Event, World, http, of, request, wait_events};
use serde_json::Value;
use slipway_builder::scan::ScannerKind;
use slipway_mesh::v1::{ImageRef, ScanRequested};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Two packages in Alpine's package database format, as `apk` writes `/lib/apk/db/installed`.
const APK_INSTALLED: &str = "C:Q1/2jhIJeyCVlB6tdYmTGp8u8FdXKg=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\n\
I:622592\nT:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\n\
m:Natanael Copa <ncopa@alpinelinux.org>\nt:1698148734\nc:0f1aa6c2ba8f7b8b4c9aca6b9b0e4e4c3e1bb7e9\n\n\
C:Q1Ha4GldNkFmh4vGjOMmbe2ttsaxw=\nP:busybox\nV:1.36.1-r5\nA:x86_64\nS:513298\nI:946176\n\
T:Size optimized toolbox of many common UNIX utilities\nU:https://busybox.net/\nL:GPL-2.0-only\n\
o:busybox\nm:Natanael Copa <ncopa@alpinelinux.org>\nt:1700000000\nc:1f1aa6c2ba8f7b8b4c9aca6b9b0e4e4c3e1bb7e9\n\n";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trivy").join(name)
}

/// The scanner stand-in: what it does is read from `<dir>/mode` at each run (`report <file>`,
/// `fail`, `garbage`, `hang`); its arguments go to `<dir>/args`.
fn scanner(dir: &Path) -> PathBuf {
    let path = dir.join("trivy-standin");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > {dir}/args\nset -- $(cat {dir}/mode)\ncase \"$1\" in\n\
         report) cat \"$2\" ;;\n\
         fail) echo 'FATAL: failed to download vulnerability DB: no network' >&2; exit 1 ;;\n\
         garbage) echo 'this is not a report' ;;\n\
         hang) sleep 60 ;;\n\
         esac\n",
        dir = dir.display()
    );
    std::fs::write(&path, script).expect("write stand-in");
    common::sh(dir, "chmod", &["+x", path.to_str().expect("utf-8")]);
    path
}

fn set_mode(dir: &Path, mode: &str) {
    std::fs::write(dir.join("mode"), mode).expect("mode");
}

fn answers<'a>(events: &'a [Event], kind: &str, request_id: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind && e.body["requestId"] == request_id).collect()
}

async fn get_json(url: &str, accept: &str) -> (reqwest::header::HeaderMap, Value) {
    let response = http().get(url).header("accept", accept).send().await.expect("GET");
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    let headers = response.headers().clone();
    (headers, response.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_build_gets_a_real_sbom_in_the_registry_and_a_scan_report() {
    let world = World::start().await;
    let standin = tempfile::tempdir().expect("stand-in dir");
    set_mode(standin.path(), &format!("report {}", fixture("debian-buster.json").display()));
    let sha = world.commit(
        "main",
        &[
            ("apps/writer/Dockerfile", "FROM scratch\nCOPY lib /lib\nCOPY etc /etc\n"),
            ("apps/writer/lib/apk/db/installed", APK_INSTALLED),
            ("apps/writer/etc/os-release", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.0\n"),
        ],
    );
    let mut config = world.config();
    config.scan.scanner = ScannerKind::Trivy;
    config.scan.command = Some(scanner(standin.path()));
    config.scan.timeout_secs = 3;
    let builder = Builder::start(config).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    publisher.publish(&request("b-scan-1", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(120), |e| {
        !of(e, "succeeded", "b-scan-1").is_empty() || !of(e, "failed", "b-scan-1").is_empty()
    })
    .await;
    assert!(of(&events, "failed", "b-scan-1").is_empty(), "{events:#?}");
    let built = &of(&events, "succeeded", "b-scan-1")[0].body;
    let digest = built["image"]["digest"].as_str().expect("digest").to_owned();
    let sbom_digest = built["sbomDigest"].as_str().expect("the SBOM digest is on build.succeeded").to_owned();

    // The scanner was given the image by digest.
    let args = std::fs::read_to_string(standin.path().join("args")).expect("args");
    assert_eq!(args.trim(), format!("image\n--format\njson\n--quiet\n{}/acme/writer@{digest}", world.registry.host()));

    // build.scanned: exact counts, the findings worst first, the SBOM and image digests;
    // and it was enqueued before build.succeeded.
    let scanned = of(&events, "scanned", "b-scan-1");
    assert_eq!(scanned.len(), 1, "{events:#?}");
    let position = |id: &str| events.iter().position(|e| e.id == id);
    assert!(position(&scanned[0].id) < position(&of(&events, "succeeded", "b-scan-1")[0].id));
    let scanned = &scanned[0].body;
    assert_eq!(scanned["image"]["digest"], digest.as_str());
    assert_eq!(scanned["sbomDigest"], sbom_digest.as_str());
    assert_eq!(scanned["scanner"], "trivy");
    assert_eq!(scanned["scannerVersion"], "dev");
    assert_eq!(
        scanned["counts"],
        serde_json::json!([
            { "severity": "CRITICAL", "total": 1, "fixable": 1 },
            { "severity": "LOW", "total": 1 },
        ])
    );
    assert_eq!(scanned["findingCount"], 2);
    let worst = &scanned["findings"][0];
    assert_eq!(
        (&worst["id"], &worst["package"], &worst["installedVersion"], &worst["fixedVersion"], &worst["severity"]),
        (
            &"CVE-2019-18224".into(),
            &"libidn2-0".into(),
            &"2.0.5-1".into(),
            &"2.0.5-1+deb10u1".into(),
            &"CRITICAL".into()
        )
    );
    assert_eq!(worst["link"], "https://avd.aquasec.com/nvd/cve-2019-18224");

    // The SBOM, read back from the registry: found by its cosign-style tag, and by digest.
    let base = format!("{}/v2/acme/writer", world.registry.url());
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let tag = format!("{}.sbom", digest.replace(':', "-"));
    let (headers, _) = get_json(&format!("{base}/manifests/{tag}"), oci).await;
    assert_eq!(headers.get("docker-content-digest").and_then(|v| v.to_str().ok()), Some(sbom_digest.as_str()));
    let (_, manifest) = get_json(&format!("{base}/manifests/{sbom_digest}"), oci).await;
    assert_eq!(manifest["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(manifest["subject"]["digest"], digest.as_str(), "{manifest}");
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer digest");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.cyclonedx+json");
    let (_, sbom) = get_json(&format!("{base}/blobs/{layer}"), "*/*").await;
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let packages: Vec<(String, String)> = (sbom["components"].as_array().expect("components").iter())
        .map(|c| (c["name"].as_str().unwrap_or("").to_owned(), c["version"].as_str().unwrap_or("").to_owned()))
        .collect();
    for package in [("musl", "1.2.4-r2"), ("busybox", "1.36.1-r5")] {
        assert!(packages.contains(&(package.0.to_owned(), package.1.to_owned())), "{package:?} in {packages:?}");
    }

    // Re-scans of the same digest: each failure mode is a build.scan-failed with its reason.
    let rescan = |id: &str| ScanRequested {
        request_id: id.to_owned(),
        app: "writer".to_owned(),
        stage: "prod".to_owned(),
        image: Some(ImageRef {
            repository: format!("{}/acme/writer", world.registry.host()),
            tag: sha.clone(),
            digest: digest.clone(),
        }),
        build_id: "b-scan-1".to_owned(),
        sbom_digest: sbom_digest.clone(),
        reason: "stale".to_owned(),
    };
    for (id, mode, reason, says) in [
        ("r-fail", "fail", "exit-status", "failed to download vulnerability DB"),
        ("r-garbage", "garbage", "malformed-report", "malformed trivy report"),
        ("r-hang", "hang", "timeout", "no result within"),
    ] {
        set_mode(standin.path(), mode);
        publisher.publish(&rescan(id)).await.expect("publish scan request");
        let events = wait_events(&js, Duration::from_secs(60), |e| !answers(e, "scan-failed", id).is_empty()).await;
        let failed = &answers(&events, "scan-failed", id)[0].body;
        assert_eq!(failed["reason"], reason, "{failed}");
        assert!(failed["message"].as_str().is_some_and(|m| m.contains(says)), "{failed}");
        assert_eq!(failed["image"]["digest"], digest.as_str());
        assert!(answers(&events, "scanned", id).is_empty());
    }
    set_mode(standin.path(), &format!("report {}", fixture("alpine-310.json").display()));
    publisher.publish(&rescan("r-ok")).await.expect("publish scan request");
    let events = wait_events(&js, Duration::from_secs(60), |e| !answers(e, "scanned", "r-ok").is_empty()).await;
    let fresh = &answers(&events, "scanned", "r-ok")[0].body;
    assert_eq!(fresh["counts"], serde_json::json!([{ "severity": "MEDIUM", "total": 4, "fixable": 4 }]));
    assert_eq!(fresh["sbomDigest"], sbom_digest.as_str(), "a re-scan keeps the build's SBOM");

    let metrics = http().get(format!("{}/metrics", builder.admin)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    for name in
        ["slipway_scans_total", "slipway_scan_duration_seconds", "slipway_scan_findings_total", "slipway_sboms_total"]
    {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    builder.stop().await;
}
