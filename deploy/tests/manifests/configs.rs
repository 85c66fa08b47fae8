//! The services' ConfigMaps (`base/config/<service>.toml`) against the services' own config
//! types and against the pods that mount them.

use super::{SERVICES, manifests, root, workloads};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The listeners a service's config declares, by the container port name that must match.
struct Loaded {
    ports: BTreeMap<&'static str, SocketAddr>,
    stream_replicas: usize,
}

fn load(service: &str, text: &str) -> Result<Loaded, toml::de::Error> {
    let (ports, nats) = match service {
        "ingest" => {
            let c: slipway_ingest::Config = toml::from_str(text)?;
            (BTreeMap::from([("admin", c.admin.listen), ("http", c.http.listen)]), c.nats)
        }
        "builder" => {
            let c: slipway_builder::Config = toml::from_str(text)?;
            let backend = c.build.backend;
            assert!(matches!(backend, slipway_builder::config::BackendKind::Kaniko), "in-cluster builds use kaniko");
            (BTreeMap::from([("admin", c.admin.listen)]), c.nats)
        }
        "promoter" => {
            let c: slipway_promoter::Config = toml::from_str(text)?;
            let grpc = c.admin_api.listen.expect("the promoter's gRPC API is on");
            (BTreeMap::from([("admin", c.admin.listen), ("grpc", grpc)]), c.nats)
        }
        "notifier" => {
            let c: slipway_notifier::Config = toml::from_str(text)?;
            (BTreeMap::from([("admin", c.admin.listen), ("http", c.http.listen)]), c.nats)
        }
        other => panic!("no service {other}"),
    };
    Ok(Loaded { ports, stream_replicas: nats.stream_replicas })
}

/// Every `*_file` (must be mounted) and `dir`/`work_dir` (must be writable) in the config.
fn paths(value: &toml::Value, out: &mut Vec<(String, bool)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                match value.as_str() {
                    Some(path) if key.ends_with("_file") => out.push((path.to_owned(), false)),
                    Some(path) if key == "dir" || key == "work_dir" => out.push((path.to_owned(), true)),
                    _ => paths(value, out),
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| paths(v, out)),
        _ => {}
    }
}

/// Whether `path` lies under a volume mount of `c` (a writable one if `writable`).
fn mounted(c: &Container, path: &str, writable: bool) -> bool {
    c.volume_mounts.iter().flatten().any(|m| {
        let under = path == m.mount_path || path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/')));
        under && !(writable && m.read_only == Some(true))
    })
}

/// The configured files and directories are mounted, the listeners match the container ports
/// and `SLIPWAY_CONFIG` names the mounted ConfigMap.
fn check_pod(service: &str, pod: &PodSpec, loaded: &Loaded, text: &str, errors: &mut Vec<String>) {
    let c = pod.containers.iter().find(|c| c.name == service).expect("a container named after the service");
    for (name, listen) in &loaded.ports {
        let port = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(*name)).map(|p| p.container_port);
        if port != Some(i32::from(listen.port())) || !listen.ip().is_unspecified() {
            errors.push(format!("{service}: {name} listens on {listen}, the container port is {port:?}"));
        }
    }
    let mut files = Vec::new();
    paths(&toml::from_str(text).expect("TOML"), &mut files);
    for (path, writable) in files {
        if !mounted(c, &path, writable) {
            errors.push(format!("{service}: {path} is not on a {}mount", if writable { "writable " } else { "" }));
        }
    }
    let env = c.env.iter().flatten().find(|e| e.name == "SLIPWAY_CONFIG").and_then(|e| e.value.clone());
    let config_mount = c.volume_mounts.iter().flatten().find(|m| m.name == "config").map(|m| m.mount_path.clone());
    if env.is_none() || env != config_mount.map(|dir| format!("{dir}/config.toml")) {
        errors.push(format!("{service}: SLIPWAY_CONFIG must name config.toml in the config mount"));
    }
    let config_map = pod.volumes.iter().flatten().find(|v| v.name == "config").and_then(|v| v.config_map.as_ref());
    if config_map.map(|m| m.name.as_str()) != Some(&format!("slipway-{service}")) {
        errors.push(format!("{service}: the config volume must be the ConfigMap slipway-{service}"));
    }
}

#[test]
fn every_service_config_map_loads_into_the_service_config_and_fits_its_pod() {
    let docs: Vec<_> = manifests().into_iter().map(|(_, d)| d).collect();
    let workloads = workloads(&docs);
    let mut errors = Vec::new();
    for service in SERVICES {
        let path = root().join("base/config").join(format!("{service}.toml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let loaded = load(service, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if loaded.stream_replicas != 3 {
            errors.push(format!("{service}: nats.stream_replicas must be 3 (the NATS cluster's size)"));
        }
        let pod = workloads[service].spec.as_ref().expect("a pod spec");
        check_pod(service, pod, &loaded, &text, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}");
}
