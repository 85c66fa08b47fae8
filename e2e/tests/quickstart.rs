//! The quickstart's whole flow, non-interactively, with the quickstart's own configs rendered
//! from `scripts/quickstart.d`: the demo repositories on a git daemon, the four services, a
//! signed push webhook → the image in the registry → the dev overlay carries its tag → dev is
//! healthy once committed (health mode `committed`) and staging waits for the approval of
//! "demo" → the approval through the admin gRPC API → the staging overlay carries the tag,
//! prod stays where it was.

use std::time::Duration;

use slipway_e2e::admin::{Client, client, connect};
use slipway_e2e::demo::{APP, WEBHOOK_SECRET};
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, Services, binaries, inspect};
use slipway_proto::v1;

/// The quickstart's bound on the build and the dev commit (QUICKSTART_DEMO_TIMEOUT).
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_flow_from_a_push_to_an_approved_staging_commit() {
    let demo = Demo::start(Database::Shared).await;
    // The quickstart's notifier has nothing to send to.
    demo.write_configs("");
    let services = demo.start_services(binaries!(), Overrides::default()).await;

    // The quickstart's push: the app repository's first commit, adding apps/hello.
    let added = ["apps/hello/Dockerfile", "apps/hello/hello.txt"];
    let zero = "0".repeat(40);
    let push = Push::new(&demo.app_url, &zero, &demo.app_sha, "feat(hello): the demo app", &added, &[]);
    let status = webhook::send(&webhook::client(), &demo.webhook_url, WEBHOOK_SECRET, &push).await;
    assert!(matches!(status, Ok(200..=299)), "ingest refused the webhook: {status:?}\n{}", services.tails(30));

    let sha = demo.app_sha.clone();
    let image_pushed = || async { inspect::registry_tags(&demo.registry.url(), "demo/hello").await.contains(&sha) };
    services.wait_until("the image in the registry", DEMO_TIMEOUT, image_pushed).await;
    services.wait_until("the dev commit", DEMO_TIMEOUT, || async { demo.overlay_tag("dev") == sha }).await;

    // Dev is healthy once committed, so staging opens at once and waits for "demo".
    let channel = connect(&demo.admin_api).await;
    let mut api = client(&channel);
    let staging = wait_staging_waiting(&services, &mut api, &sha).await;
    assert_eq!((staging.approvals_required, staging.approvals_granted), (1, 0), "{staging:?}");
    assert!(staging.allowed_approvers.iter().any(|a| a == "demo"), "{staging:?}");
    assert_eq!(demo.overlay_tag("staging"), "v0", "staging moved before its approval");

    // `slipctl approve hello staging`, through the same gRPC call.
    let request = v1::ApproveRequest { app: APP.into(), stage: "staging".into(), ..Default::default() };
    let approved = api.approve(request).await.expect("approve").into_inner();
    assert_eq!(approved.granted, 1, "{approved:?}");
    services.wait_until("the staging commit", DEMO_TIMEOUT, || async { demo.overlay_tag("staging") == sha }).await;
    assert_eq!(demo.overlay_tag("prod"), "v0", "prod needs its own approval");

    // Dev and staging each got one commit for the build, carrying its source commit.
    for stage in ["dev", "staging"] {
        let path = format!("apps/{APP}/{stage}/kustomization.yaml");
        let commits = inspect::commits_touching(&demo.gitops_path(), "main", &path);
        let promoted: Vec<_> = commits.iter().filter(|c| c.sources.contains(&sha)).collect();
        assert_eq!(promoted.len(), 1, "{stage}: {commits:#?}");
        assert!(promoted[0].subject.contains(&format!("to {stage}")), "{promoted:?}");
    }
    services.stop().await;
}

/// The staging status once a promotion of `tag` waits there for approvals.
async fn wait_staging_waiting(services: &Services, api: &mut Client, tag: &str) -> v1::StageStatus {
    let deadline = tokio::time::Instant::now() + DEMO_TIMEOUT;
    loop {
        let apps = api
            .list_apps(v1::ListAppsRequest { app: APP.into(), ..Default::default() })
            .await
            .expect("list apps")
            .into_inner();
        let staging = apps.apps.iter().flat_map(|a| &a.stages).find(|s| s.stage == "staging").cloned();
        // The only build is `tag`'s, so the promotion waiting here is its.
        if let Some(s) = staging.filter(|s| s.approvals_required > 0) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "staging never waited for approval of {tag}: {apps:#?}\n{}",
            services.tails(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
