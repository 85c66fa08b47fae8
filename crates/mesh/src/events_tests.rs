use super::*;
use std::collections::HashSet;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn image() -> Option<v1::ImageRef> {
    Some(v1::ImageRef {
        repository: "127.0.0.1:5000/acme/writer".into(),
        tag: SHA.into(),
        digest: format!("sha256:{}", "e".repeat(64)),
    })
}

fn source() -> Option<v1::SourceRef> {
    Some(v1::SourceRef {
        repository: "acme/mono".into(),
        commit_sha: SHA.into(),
        r#ref: "refs/heads/main".into(),
        author: "octocat".into(),
    })
}

/// One filled-in payload of every kind.
fn samples() -> Vec<Payload> {
    let (app, stage, pid) = ("writer".to_string(), "prod".to_string(), "p-1".to_string());
    vec![
        v1::SourcePush {
            delivery_id: "d1".into(),
            repository: "acme/mono".into(),
            r#ref: "refs/heads/main".into(),
            after: SHA.into(),
            forced: true,
            commits: vec![v1::Commit {
                sha: SHA.into(),
                message: "feat(writer)!: new\n\n[skip ci]".into(),
                added: vec!["apps/writer/a.rs".into()],
                conventional_type: "feat".into(),
                breaking: true,
                timestamp: Some(pbjson_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }),
                ..Default::default()
            }],
            changed_apps: vec![app.clone()],
            ..Default::default()
        }
        .into_payload(),
        v1::SourcePullRequest {
            repository: "acme/mono".into(),
            number: 7,
            action: v1::PullRequestAction::Closed as i32,
            merged: true,
            ..Default::default()
        }
        .into_payload(),
        v1::SourceTag {
            repository: "acme/mono".into(),
            tag: "v1.2.3".into(),
            semver: "1.2.3".into(),
            release: true,
            ..Default::default()
        }
        .into_payload(),
        v1::SourceTestGate {
            repository: "acme/mono".into(),
            commit_sha: SHA.into(),
            kind: v1::TestGateKind::WorkflowRun as i32,
            conclusion: "success".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::SourcePing { hook_id: 42, zen: "Keep it simple.".into(), ..Default::default() }.into_payload(),
        v1::ChatopsCommand {
            kind: v1::CommandKind::Approve as i32,
            app: app.clone(),
            actor: "octocat".into(),
            raw: "/approve writer prod".into(),
            pull_request: 7,
            ..Default::default()
        }
        .into_payload(),
        v1::BuildRequested {
            build_id: "b1".into(),
            app: app.clone(),
            source: source(),
            extra_tags: vec!["v1.2.3".into()],
            ..Default::default()
        }
        .into_payload(),
        v1::BuildStarted { build_id: "b1".into(), app: app.clone(), backend: "buildah".into(), ..Default::default() }
            .into_payload(),
        v1::BuildSucceeded {
            build_id: "b1".into(),
            app: app.clone(),
            source: source(),
            image: image(),
            duration_ms: 1234,
            sbom_digest: String::new(),
            ..Default::default()
        }
        .into_payload(),
        v1::BuildFailed {
            build_id: "b1".into(),
            reason: "invalid-request".into(),
            log_tail: vec!["x".into()],
            ..Default::default()
        }
        .into_payload(),
        v1::PromotionRequested {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            image: image(),
            trigger: v1::PromotionTrigger::Auto as i32,
            ..Default::default()
        }
        .into_payload(),
        v1::PromotionCommitted {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            gitops_commit: SHA.into(),
            ..Default::default()
        }
        .into_payload(),
        v1::PromotionSynced { promotion_id: pid.clone(), app: app.clone(), stage: stage.clone(), revision: SHA.into() }
            .into_payload(),
        v1::PromotionHealthy { promotion_id: pid.clone(), app: app.clone(), stage: stage.clone(), image: image() }
            .into_payload(),
        v1::PromotionDegraded {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            health_status: "Degraded".into(),
            message: "crashloop".into(),
        }
        .into_payload(),
        v1::PromotionFailed {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            reason: "push".into(),
            message: "m".into(),
        }
        .into_payload(),
        v1::PromotionRolledBack {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            from: image(),
            to: image(),
            automatic: true,
            ..Default::default()
        }
        .into_payload(),
        v1::ApprovalRequested {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            required: 2,
            allowed_approvers: vec!["a".into()],
            ..Default::default()
        }
        .into_payload(),
        v1::ApprovalGranted {
            promotion_id: pid.clone(),
            app: app.clone(),
            stage: stage.clone(),
            actor: "a".into(),
            granted: 1,
            required: 2,
        }
        .into_payload(),
        v1::ApprovalRejected {
            promotion_id: pid,
            reason: "self-approval".into(),
            allowed_teams: vec!["acme/sre".into()],
            ..Default::default()
        }
        .into_payload(),
        v1::CommandRefused {
            app: app.clone(),
            stage: stage.clone(),
            command: v1::CommandKind::Rollback.into(),
            actor: "a".into(),
            reason: "nothing-to-roll-back-to".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::HoldPlaced { app: app.clone(), stage: stage.clone(), actor: "a".into(), reason: "rollback".into() }
            .into_payload(),
        v1::HoldReleased { app: app.clone(), stage, actor: "a".into(), reason: "fixed".into() }.into_payload(),
        v1::NotificationSent {
            event_id: "e".into(),
            destination: "slack-main".into(),
            provider: "slack".into(),
            app: app.clone(),
            attempts: 1,
        }
        .into_payload(),
        v1::NotificationFailed {
            event_id: "e".into(),
            destination: "hook".into(),
            provider: "webhook".into(),
            attempts: 5,
            error: "503".into(),
            app: String::new(),
        }
        .into_payload(),
        v1::CatalogPublished {
            repository: "git://h/deploy.git".into(),
            commit_sha: SHA.into(),
            github_repository: "acme/deploy".into(),
            digest: format!("sha256:{}", "c".repeat(64)),
            apps: 3,
            revision: 7,
        }
        .into_payload(),
        v1::CatalogRejected {
            repository: "git://h/deploy.git".into(),
            commit_sha: SHA.into(),
            github_repository: String::new(),
            problems: vec![v1::CatalogProblem {
                file: "slipway.yaml".into(),
                line: 12,
                key: "apps[0].pipeline".into(),
                reason: "pipeline \"fast\" is not defined".into(),
            }],
            problem_count: 1,
            in_force_commit: String::new(),
        }
        .into_payload(),
        v1::BuildScanned {
            build_id: "b-1".into(),
            app: "writer".into(),
            image: Some(v1::ImageRef {
                repository: "r/w".into(),
                tag: SHA.into(),
                digest: format!("sha256:{}", "a".repeat(64)),
            }),
            sbom_digest: format!("sha256:{}", "b".repeat(64)),
            scanner: "trivy".into(),
            scanner_version: "0.58.1".into(),
            db_version: "2".into(),
            counts: vec![v1::SeverityCount { severity: "CRITICAL".into(), total: 1, fixable: 1 }],
            findings: vec![v1::Finding {
                id: "CVE-2019-18276".into(),
                package: "bash".into(),
                installed_version: "5.0-4".into(),
                fixed_version: "5.0-5".into(),
                severity: "CRITICAL".into(),
                link: "https://avd.aquasec.com/nvd/cve-2019-18276".into(),
            }],
            finding_count: 1,
            scanned_at: Some(pbjson_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            duration_ms: 1200,
            request_id: String::new(),
        }
        .into_payload(),
        v1::BuildScanFailed {
            build_id: "b-1".into(),
            app: "writer".into(),
            scanner: "grype".into(),
            reason: "timeout".into(),
            message: "no report within 300s".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::ScanRequested {
            request_id: "r-1".into(),
            app: "writer".into(),
            stage: "prod".into(),
            reason: "stale".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::VerificationRequested {
            request_id: "v-1".into(),
            promotion_id: "writer-staging-4b52662-2".into(),
            app: "writer".into(),
            stage: "staging".into(),
            requested_by: "healthy".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::VerificationMeasured {
            request_id: "v-1".into(),
            app: "writer".into(),
            stage: "staging".into(),
            check: "success-rate".into(),
            phase: "successful".into(),
            value: "0.98".into(),
            ..Default::default()
        }
        .into_payload(),
        v1::VerificationCompleted {
            request_id: "v-1".into(),
            app: "writer".into(),
            stage: "staging".into(),
            verdict: "failed".into(),
            checks: vec![v1::CheckOutcome {
                check: "success-rate".into(),
                verdict: "failed".into(),
                message: "failed (3) > failureLimit (2)".into(),
                measurements: 3,
            }],
            ..Default::default()
        }
        .into_payload(),
    ]
}

fn encode(payload: &Payload) -> (EventKind, Vec<u8>, String) {
    macro_rules! enc {
        ($($ty:ident),*) => {
            match payload {
                $(Payload::$ty(p) => (EventKind::$ty, serde_json::to_vec(p).expect("encode"), p.subject().expect("subject")),)*
            }
        };
    }
    enc!(
        SourcePush,
        SourcePullRequest,
        SourceTag,
        SourceTestGate,
        SourcePing,
        ChatopsCommand,
        BuildRequested,
        BuildStarted,
        BuildSucceeded,
        BuildFailed,
        PromotionRequested,
        PromotionCommitted,
        PromotionSynced,
        PromotionHealthy,
        PromotionDegraded,
        PromotionFailed,
        PromotionRolledBack,
        ApprovalRequested,
        ApprovalGranted,
        ApprovalRejected,
        CommandRefused,
        HoldPlaced,
        HoldReleased,
        NotificationSent,
        NotificationFailed,
        CatalogPublished,
        CatalogRejected,
        BuildScanned,
        BuildScanFailed,
        ScanRequested,
        VerificationRequested,
        VerificationMeasured,
        VerificationCompleted
    )
}

fn assert_camel_case(value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                assert!(!k.contains('_'), "snake_case key {k}");
                assert_camel_case(v);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(assert_camel_case),
        _ => {}
    }
}

#[test]
fn every_kind_round_trips_through_proto3_json() {
    let samples = samples();
    let kinds: HashSet<EventKind> = samples.iter().map(payload_kind).collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "a sample for every kind");
    for payload in samples {
        let (kind, body, subject) = encode(&payload);
        assert_eq!(kind, payload_kind(&payload));
        // The body is proto3 JSON: camelCase names, no default-valued fields.
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_camel_case(&value);
        assert_eq!(decode_payload(kind, &body).expect("decode"), payload, "{kind}");
        // Subjects have the right shape and only safe tokens.
        let tokens: Vec<&str> = subject.split('.').collect();
        assert_eq!(tokens[..3], ["slipway", kind.domain(), kind.event()]);
        assert!(tokens[3..].iter().all(|t| crate::names::is_token(t)), "{subject}");
        assert_eq!(EventKind::from_ce_type(kind.ce_type()), Some(kind));
        // And the whole Event (envelope + oneof) round-trips too.
        let envelope = Envelope {
            id: EventId::new(),
            kind,
            source: "/test".into(),
            subject,
            time: chrono::Utc::now(),
            traceparent: None,
            tracestate: None,
        };
        let event = to_event(&envelope, payload, 9);
        let json = serde_json::to_string(&event).expect("event json");
        let back: v1::Event = serde_json::from_str(&json).expect("event back");
        assert_eq!(back, event);
        // And protobuf binary, as gRPC carries it.
        let bin = prost::Message::encode_to_vec(&event);
        assert_eq!(<v1::Event as prost::Message>::decode(bin.as_slice()).expect("bin"), event);
    }
}

#[test]
fn subjects_reject_unsafe_names() {
    let bad = v1::BuildRequested { app: "writer.>".into(), ..Default::default() };
    assert!(bad.subject().is_err());
    let bad = v1::PromotionHealthy { app: "writer".into(), stage: "prod *".into(), ..Default::default() };
    assert!(bad.subject().is_err());
    let none = v1::ChatopsCommand { kind: v1::CommandKind::Lgtm as i32, ..Default::default() };
    assert_eq!(none.subject().expect("subject"), "slipway.chatops.command.-.-");
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    for kind in EventKind::ALL {
        for body in [&b""[..], b"{", b"[]", b"{\"app\": 5}", b"\xff\xfe"] {
            let _ = decode_payload(*kind, body);
        }
        assert!(decode_payload(*kind, b"not json").is_err());
    }
}

#[test]
fn an_event_over_the_bound_is_refused_where_it_is_made() {
    let ping = v1::SourcePing { zen: "z".repeat(crate::bounds::MAX_EVENT_BYTES), ..Default::default() };
    let error = crate::prepare("/test", &ping).expect_err("too large");
    assert!(matches!(error, crate::Error::TooLarge { size, max, .. } if size > max), "{error}");
    let fits = v1::SourcePing { zen: "z".repeat(crate::bounds::MAX_EVENT_BYTES - 100), ..Default::default() };
    assert!(crate::prepare("/test", &fits).is_ok());
}
