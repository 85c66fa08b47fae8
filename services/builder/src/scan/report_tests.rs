use super::*;

fn fixture(path: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn counts(report: &Report) -> Vec<(String, u32, u32)> {
    report.counts().into_iter().map(|c| (c.severity, c.total, c.fixable)).collect()
}

#[test]
fn trivy_debian_buster_has_one_fixable_critical_and_one_low() {
    let report = parse(Format::Trivy, &fixture("trivy/debian-buster.json")).expect("report");
    assert_eq!(report.scanner_version, "dev");
    assert_eq!(counts(&report), [("CRITICAL".into(), 1, 1), ("LOW".into(), 1, 0)]);
    let worst = &report.findings[0];
    assert_eq!(
        (worst.id.as_str(), worst.package.as_str(), worst.installed_version.as_str()),
        ("CVE-2019-18224", "libidn2-0", "2.0.5-1")
    );
    assert_eq!(worst.fixed_version, "2.0.5-1+deb10u1");
    assert_eq!(worst.link, "https://avd.aquasec.com/nvd/cve-2019-18224");
}

#[test]
fn every_trivy_fixture_reads_with_the_counts_its_sources_list() {
    let expected: [(&str, &[(&str, u32)]); 7] = [
        ("alpine-310.json", &[("MEDIUM", 4)]),
        ("alpine-39-high-critical.json", &[("CRITICAL", 2)]),
        ("busybox-with-lockfile.json", &[("HIGH", 1), ("MEDIUM", 1)]),
        ("centos-7.json", &[("MEDIUM", 1), ("LOW", 2)]),
        ("debian-buster.json", &[("CRITICAL", 1), ("LOW", 1)]),
        ("distroless-base.json", &[("MEDIUM", 2), ("LOW", 2)]),
        ("ubuntu-1804.json", &[("MEDIUM", 4), ("LOW", 1)]),
    ];
    for (file, want) in expected {
        let report = parse(Format::Trivy, &fixture(&format!("trivy/{file}"))).expect(file);
        let got: Vec<(String, u32)> = report.counts().into_iter().map(|c| (c.severity, c.total)).collect();
        let want: Vec<(String, u32)> = want.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn grype_matches_read_with_fix_state_and_database() {
    let report = parse(Format::Grype, &fixture("grype/alpine-openssl.json")).expect("report");
    assert_eq!(report.scanner_version, "0.74.0");
    assert_eq!(report.db_version, "v5 2024-01-17T01:27:13Z");
    assert_eq!(counts(&report), [("CRITICAL".into(), 1, 0), ("HIGH".into(), 1, 1), ("UNKNOWN".into(), 1, 1)]);
    let high = report.findings.iter().find(|f| f.id == "CVE-2023-0286").expect("high");
    assert_eq!((high.package.as_str(), high.installed_version.as_str()), ("libcrypto3", "3.0.7-r2"));
    assert_eq!(high.fixed_version, "3.0.8-r0");
    assert_eq!(high.link, "https://security.alpinelinux.org/vuln/CVE-2023-0286");
    let critical = &report.findings[0];
    assert_eq!((critical.id.as_str(), critical.fixed_version.as_str()), ("CVE-2022-48174", ""), "not-fixed");
}

#[test]
fn a_newer_grype_database_status_and_an_empty_report_read() {
    let json = br#"{"matches": [], "descriptor": {"name": "grype", "version": "0.87.0",
        "db": {"status": {"schemaVersion": "v6.0.2", "built": "2025-03-01T00:00:00Z", "valid": true}}}}"#;
    let report = parse(Format::Grype, json).expect("report");
    assert_eq!(report.db_version, "v6.0.2 2025-03-01T00:00:00Z");
    assert!(report.findings.is_empty() && report.counts().is_empty());
    let trivy = br#"{"SchemaVersion": 2, "Trivy": {"Version": "0.58.1", "VulnerabilityDB": {"Version": 2,
        "UpdatedAt": "2025-01-01T06:00:00Z"}}, "Results": [{"Target": "x", "Class": "os-pkgs"}]}"#;
    let report = parse(Format::Trivy, trivy).expect("clean trivy report");
    assert_eq!((report.scanner_version.as_str(), report.db_version.as_str()), ("0.58.1", "v2 2025-01-01T06:00:00Z"));
}

#[test]
fn garbage_and_wrong_formats_are_malformed_not_panics() {
    for body in [&b""[..], b"not json", b"{", b"[]", b"{\"SchemaVersion\": 1, \"Results\": []}", b"\xff\xfe"] {
        assert!(parse(Format::Trivy, body).is_err(), "{body:?}");
    }
    assert!(parse(Format::Grype, b"{\"SchemaVersion\": 2, \"Results\": []}").is_err(), "no matches: not grype");
    assert!(parse(Format::Trivy, &fixture("grype/alpine-openssl.json")).is_err());
    let error = parse(Format::Trivy, b"{").expect_err("malformed").to_string();
    assert!(error.starts_with("malformed trivy report"), "{error}");
}

#[test]
fn a_huge_report_is_capped_with_exact_counts_and_fits_the_event_bound() {
    let findings: Vec<Finding> = (0..20_000)
        .map(|i| Finding {
            id: format!("CVE-2024-{i:05}"),
            package: format!("pkg-{i}-{}", "x".repeat(300)),
            installed_version: "1.0".into(),
            fixed_version: if i % 2 == 0 { "1.1".into() } else { String::new() },
            severity: if i % 10 == 0 { "CRITICAL".into() } else { "MEDIUM".into() },
            link: format!("https://example.invalid/{i}"),
        })
        .collect();
    let report = Report { scanner_version: "x".into(), db_version: String::new(), findings };
    let event = report.into_event(BuildScanned { app: "writer".into(), ..Default::default() });
    assert_eq!(event.finding_count, 20_000);
    assert_eq!(event.counts.iter().map(|c| c.total).sum::<u32>(), 20_000);
    assert_eq!(event.counts[0].severity, "CRITICAL");
    assert_eq!((event.counts[0].total, event.counts[0].fixable), (2_000, 2_000));
    assert!(event.findings.len() <= MAX_FINDINGS && !event.findings.is_empty());
    assert!(event.findings.iter().all(|f| f.package.len() <= 256));
    let (_, body) = slipway_mesh::prepare("/test", &event).expect("within the bound");
    assert!(body.len() < slipway_mesh::bounds::MAX_EVENT_BYTES);
}
