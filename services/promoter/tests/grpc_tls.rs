//! The admin API's configuration and optional mTLS: `[admin_api]` is read from TOML with token
//! hashes and its mistakes are named by key; with `[admin_api.tls]` and a client CA, a client
//! with a certificate from that CA is served and one without is not. Certificates are made
//! with the `openssl` command; the TLS test is skipped (and says so) where it is missing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use slipway_mesh::v1::{self, admin_service_client::AdminServiceClient};
use slipway_promoter::config::{AdminApiConfig, ApiTls, ApiToken, Role};
use slipway_promoter::deployer::RecordingDeployer;
use slipway_promoter::{Config, grpc::hash_token};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret, Validate as _};
use slipway_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[test]
fn admin_api_config_is_read_from_toml_and_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("promoter.toml");
    let hash = hash_token("s3cret");
    let toml = format!(
        "[gitops]\nwork_dir = \"/tmp/x\"\n[admin_api]\nlisten = \"127.0.0.1:9443\"\n\
         [[admin_api.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{hash}\"\n"
    );
    std::fs::write(&path, toml).expect("write");
    let config: Config = slipway_runtime::config::load(Some(&path)).expect("load");
    assert_eq!(config.admin_api.listen, Some(([127, 0, 0, 1], 9443).into()));
    assert_eq!(config.admin_api.tokens, [ApiToken { name: "ci".into(), role: Role::Operator, sha256: hash.clone() }]);

    let check = |api: AdminApiConfig| Config { admin_api: api, ..Config::default() }.validate();
    assert!(check(AdminApiConfig::default()).is_ok(), "off by default");
    let listen = Some(([127, 0, 0, 1], 9443).into());
    let err = check(AdminApiConfig { listen, ..AdminApiConfig::default() }).expect_err("no tokens");
    assert!(err.to_string().contains("admin_api.tokens"), "{err}");
    let bad = ApiToken { name: "ci".into(), role: Role::Admin, sha256: "s3cret".into() };
    let err = check(AdminApiConfig { listen, tokens: vec![bad], tls: None }).expect_err("a token, not a hash");
    assert!(err.to_string().contains("admin_api.tokens[0].sha256"), "{err}");
}

/// `openssl` with `args` in `dir`; false when there is no openssl.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    match std::process::Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => {
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            true
        }
        Err(_) => false,
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all P-256.
fn make_certificates(dir: &Path) -> bool {
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = [&["req", "-x509"][..], &key, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=ca"]];
    if !openssl(dir, &ca.concat()) {
        return false;
    }
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let (keyfile, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subject = format!("/CN={name}");
        openssl(dir, &[&["req"][..], &key, &["-keyout", &keyfile, "-out", &csr, "-subj", &subject]].concat());
        let ext = format!("{name}.ext");
        let san = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n";
        std::fs::write(dir.join(&ext), format!("{san}extendedKeyUsage={usage}\n")).expect("ext");
        let sign = ["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
        openssl(dir, &[&sign[..], &["-out", &pem, "-days", "1", "-extfile", &ext]].concat());
    }
    true
}

fn tls_config(nats: &NatsServer, db: &str, dir: &Path) -> Config {
    let tls = ApiTls {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
        client_ca_file: Some(dir.join("ca.pem")),
    };
    Config {
        nats: NatsConfig { url: nats.url(), ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db.to_owned())), ..DatabaseConfig::with_schema("promoter") },
        admin_api: AdminApiConfig {
            listen: None,
            tokens: vec![ApiToken { name: "vera".into(), role: Role::Viewer, sha256: hash_token("t") }],
            tls: Some(tls),
        },
        ..Config::default()
    }
}

/// `ListApps` over TLS, with or without the client certificate.
async fn list_apps(api: SocketAddr, dir: &Path, with_identity: bool) -> Result<v1::ListAppsResponse, String> {
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem"))).domain_name("localhost");
    if with_identity {
        tls = tls.identity(Identity::from_pem(read("client.pem"), read("client.key")));
    }
    let url = format!("https://{api}");
    let endpoint =
        Channel::from_shared(url).expect("url").tls_config(tls).expect("tls").timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let mut client = AdminServiceClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", "Bearer t".parse().expect("ascii"));
        Ok(r)
    });
    client
        .list_apps(v1::ListAppsRequest::default())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_serves_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().expect("dir");
    if !make_certificates(dir.path()) {
        eprintln!("SKIPPED: no openssl command to make test certificates");
        return;
    }
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let config = tls_config(&nats, &db, dir.path());
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the admin API");
    let api_addr = api.local_addr().expect("addr");
    let listeners = slipway_promoter::Listeners { admin: listener, api: Some(api) };
    let deployer = Arc::new(RecordingDeployer::new());
    let service = tokio::spawn(slipway_promoter::serve(config.clone(), listeners, shutdown.clone(), deployer));

    let mut answer = Err(String::new());
    for _ in 0..150 {
        answer = list_apps(api_addr, dir.path(), true).await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answer.expect("served with a client certificate").apps.is_empty());
    let refused = list_apps(api_addr, dir.path(), false).await;
    assert!(refused.is_err(), "served without a client certificate: {refused:?}");

    shutdown.cancel();
    service.await.expect("join").expect("service");
}
