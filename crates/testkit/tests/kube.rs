//! The fake Kubernetes API server over raw HTTP, as any client sees it: create, get, list
//! with selectors, watch from a resourceVersion, status updates, cascading delete, pod logs.

use serde_json::{Value, json};
use slipway_testkit::kube::FakeKube;
use std::time::Duration;

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

fn job(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "busybox" }] } } },
    })
}

/// Reads watch lines from `resp` until `n` events arrived.
async fn events(resp: &mut reqwest::Response, n: usize) -> Vec<Value> {
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await.expect("event in time");
        buf.extend_from_slice(&chunk.expect("chunk").expect("stream open"));
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            out.push(serde_json::from_slice(&line).expect("event JSON"));
        }
    }
    out
}

#[tokio::test]
async fn create_get_list_and_errors_speak_the_api() {
    let kube = FakeKube::start().await.expect("fake kube");
    let jobs = format!("{}/apis/batch/v1/namespaces/ci/jobs", kube.url());
    let created = http().post(&jobs).json(&job("j1", "a")).send().await.expect("POST");
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["metadata"]["namespace"], "ci");
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["resourceVersion"] == "1");
    http().post(&jobs).json(&job("j2", "b")).send().await.expect("POST");
    let mut generated = job("", "b");
    generated["metadata"] = json!({ "generateName": "build-", "labels": { "app": "b" } });
    let generated: Value = http().post(&jobs).json(&generated).send().await.expect("POST").json().await.expect("json");
    let generated_name = generated["metadata"]["name"].as_str().expect("name");
    assert!(generated_name.starts_with("build-") && generated_name.len() == 11, "{generated_name}");

    let again = http().post(&jobs).json(&job("j1", "a")).send().await.expect("POST");
    assert_eq!(again.status(), 409);
    assert_eq!(again.json::<Value>().await.expect("status")["reason"], "AlreadyExists");
    let missing = http().get(format!("{jobs}/nope")).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.expect("status")["kind"], "Status");

    let got: Value = http().get(format!("{jobs}/j1")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(got["spec"], created["spec"]);
    let list: Value =
        http().get(&jobs).query(&[("labelSelector", "app=b")]).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["kind"], "JobList");
    assert_eq!(list["metadata"]["resourceVersion"], "3");
    assert_eq!(list["items"].as_array().expect("items").len(), 2);
    let by_name: Value = http()
        .get(&jobs)
        .query(&[("fieldSelector", "metadata.name=j1")])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(by_name["items"][0]["metadata"]["name"], "j1");
    let all: Value = http()
        .get(format!("{}/apis/batch/v1/jobs", kube.url()))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(all["items"].as_array().expect("items").len(), 3);
    assert_eq!(kube.objects("Job").len(), 3);
}

#[tokio::test]
async fn watch_replays_after_a_resource_version_and_streams_changes() {
    let kube = FakeKube::start().await.expect("fake kube");
    let jobs = format!("{}/apis/batch/v1/namespaces/ci/jobs", kube.url());
    http().post(&jobs).json(&job("j1", "a")).send().await.expect("POST");
    http().post(&jobs).json(&job("j2", "a")).send().await.expect("POST");

    let query = [("watch", "true"), ("resourceVersion", "1"), ("fieldSelector", "metadata.name=j2")];
    let mut watch = http().get(&jobs).query(&query).send().await.expect("watch");
    assert_eq!(watch.status(), 200);
    let replayed = events(&mut watch, 1).await;
    assert_eq!(
        (replayed[0]["type"].as_str(), replayed[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("j2"))
    );

    kube.update_status("Job", "ci", "j1", json!({ "active": 1 })).expect("j1");
    kube.update_status("Job", "ci", "j2", json!({ "succeeded": 1 })).expect("j2");
    let modified = events(&mut watch, 1).await;
    assert_eq!(modified[0]["type"], "MODIFIED");
    assert_eq!(modified[0]["object"]["status"]["succeeded"], 1);
    assert_eq!(modified[0]["object"]["metadata"]["resourceVersion"], "4", "j1's change was rv 3");

    let deleted = http().delete(format!("{jobs}/j2")).json(&json!({ "propagationPolicy": "Background" })).send().await;
    assert_eq!(deleted.expect("DELETE").status(), 200);
    let gone = events(&mut watch, 1).await;
    assert_eq!(gone[0]["type"], "DELETED");
    assert_eq!(kube.deletions()[0].propagation.as_deref(), Some("Background"));

    // Without a resourceVersion a watch starts with the current objects.
    let mut fresh = http().get(&jobs).query(&[("watch", "1")]).send().await.expect("watch");
    let current = events(&mut fresh, 1).await;
    assert_eq!(current[0]["object"]["metadata"]["name"], "j1");
    kube.drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), fresh.chunk()).await.expect("ends");
    assert!(end.expect("clean end").is_none());
}

#[tokio::test]
async fn deleting_an_owner_takes_its_pods_and_pods_serve_logs() {
    let kube = FakeKube::start().await.expect("fake kube");
    let jobs = format!("{}/apis/batch/v1/namespaces/ci/jobs", kube.url());
    let created: Value =
        http().post(&jobs).json(&job("j1", "a")).send().await.expect("POST").json().await.expect("job");
    kube.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "j1-abcde", "namespace": "ci", "labels": { "job-name": "j1" },
                      "ownerReferences": [{ "kind": "Job", "name": "j1", "uid": created["metadata"]["uid"] }] },
    }));
    kube.set_pod_log("ci", "j1-abcde", "one\ntwo\nthree\n");
    let pods = format!("{}/api/v1/namespaces/ci/pods", kube.url());
    let log = http().get(format!("{pods}/j1-abcde/log")).send().await.expect("log").text().await.expect("text");
    assert_eq!(log, "one\ntwo\nthree\n");
    let tail = http().get(format!("{pods}/j1-abcde/log?tailLines=1")).send().await.expect("log");
    assert_eq!(tail.text().await.expect("text"), "three\n");
    let listed: Value = http()
        .get(&pods)
        .query(&[("labelSelector", "job-name=j1")])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    http().delete(format!("{jobs}/j1")).query(&[("propagationPolicy", "Foreground")]).send().await.expect("DELETE");
    assert!(kube.objects("Job").is_empty() && kube.objects("Pod").is_empty());
    assert_eq!(http().get(format!("{pods}/j1-abcde/log")).send().await.expect("log").status(), 404);
}
