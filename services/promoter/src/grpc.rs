//! The admin gRPC API (`slipway.v1.AdminService`, admin.proto) that slipctl and dashboards
//! call, on its own listener next to the HTTP admin port.
//!
//! A request flows: TLS (optional, client certificates when `admin_api.tls.client_ca_file` is
//! set) → the bearer-token interceptor ([`auth::TokenTable`]: SHA-256 of the token looked up
//! among `[[admin_api.tokens]]`) → the handler ([`service::AdminApi`]), which checks the role
//! the method needs, continues the caller's trace from the metadata, validates names and calls
//! the [`Promoter`] as the token's name. `Watch` streams events from the `SLIPWAY` stream
//! ([`watch`]), each live event encoded once for all watchers ([`route`]). The standard health (`grpc.health.v1`) and reflection services are served
//! alongside, without a token.

pub mod auth;
mod route;
pub mod service;
mod status;

pub use slipway_fanout::{hub, watch};

pub use auth::{Caller, TokenTable, hash_token};
pub use service::AdminApi;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream::stream::Stream as JsStream;
use slipway_mesh::v1::admin_service_server::AdminServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::Promoter;
use crate::config::{AdminApiConfig, ApiTls};

/// The admin API's bound socket, TLS settings and tokens. Made before anything is served, so a
/// taken port or an unreadable certificate stops the service at start, naming the key.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    tokens: TokenTable,
}

impl Listener {
    /// Takes `bound` (or binds `admin_api.listen`) and reads the TLS files; `None` when there
    /// is neither.
    pub async fn bind(config: &AdminApiConfig, bound: Option<TcpListener>) -> anyhow::Result<Option<Self>> {
        let listener = match (bound, config.listen) {
            (Some(listener), _) => listener,
            (None, Some(addr)) => {
                TcpListener::bind(addr).await.with_context(|| format!("admin_api.listen: binding {addr}"))?
            }
            (None, None) => return Ok(None),
        };
        let tls = config.tls.as_ref().map(tls).transpose()?;
        Ok(Some(Listener { listener, tls, tokens: TokenTable::new(&config.tokens) }))
    }

    /// Where it listens (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

fn tls(config: &ApiTls) -> anyhow::Result<ServerTlsConfig> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("admin_api.tls.{key}: reading {}", path.display()))
    };
    let identity = Identity::from_pem(read("cert_file", &config.cert_file)?, read("key_file", &config.key_file)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read("client_ca_file", ca)?));
    }
    Ok(tls)
}

/// Serves the admin API on `listener` until `shutdown` (which also ends open `Watch` streams).
pub async fn serve(
    listener: Listener,
    promoter: Arc<Promoter>,
    stream: JsStream,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(slipway_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // grpcurl and most tools ask v1 first and fall back to v1alpha.
    let reflection_v1 = reflection().build_v1().context("admin API reflection (v1)")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("admin API reflection (v1alpha)")?;
    let api = route::AdminRoute::new(AdminApi::new(promoter, stream, shutdown.clone()), listener.tokens);
    let mut server = Server::builder();
    if let Some(tls) = listener.tls {
        server = server.tls_config(tls).context("admin_api.tls")?;
    }
    let addr = listener.listener.local_addr()?;
    tracing::info!(%addr, "admin gRPC API listening");
    server
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener.listener), shutdown.cancelled_owned())
        .await
        .context("admin gRPC API")?;
    Ok(())
}
