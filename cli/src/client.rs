//! The connection to the admin API and what can go wrong with it, as one-line messages with
//! their exit codes: usage 2, server unreachable 3, token refused or role too low 4, any other
//! refusal 1.

use std::time::Duration;

use slipway_proto::v1::admin_service_client::AdminServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::settings::Settings;
use slipway_proto::REFUSAL_HEADER;

/// Why a command failed, already phrased for a person.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or config file.
    Usage(String),
    /// Nothing answers at the server address.
    Unreachable(String),
    /// No token, a token the server does not know, or a role too low.
    Auth(String),
    /// The server answered with an error.
    Api(String),
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Auth(_) => 4,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Unreachable(m) | Failure::Auth(m) | Failure::Api(m) => m,
        }
    }
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The admin client with the token attached.
pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// A connected client and what explains its failures.
pub struct Api {
    client: Client,
    settings: Settings,
}

impl Api {
    /// Connects to `settings.server`.
    pub async fn connect(settings: Settings) -> Result<Self, Failure> {
        let bearer = format!("Bearer {}", settings.token)
            .parse()
            .map_err(|_| Failure::Auth("the token has characters an HTTP header cannot carry".into()))?;
        let endpoint = endpoint(&settings)?;
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::Unreachable(format!("cannot reach the Slipway admin API at {}: {}", settings.server, cause(&e)))
        })?;
        Ok(Api { client: AdminServiceClient::with_interceptor(channel, Bearer(bearer)), settings })
    }

    /// A handle for one call (clients share the connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The answer of a call, or its failure explained.
    pub fn ok<T>(&self, result: Result<tonic::Response<T>, Status>) -> Result<T, Failure> {
        result.map(tonic::Response::into_inner).map_err(|status| self.explain(&status))
    }

    /// The one-line explanation of a failed call.
    pub fn explain(&self, status: &Status) -> Failure {
        let server = &self.settings.server;
        let message = status.message();
        match status.code() {
            Code::Unauthenticated => Failure::Auth(format!(
                "the token was not accepted by the Slipway admin API at {server} ({message}); check --token, \
                 SLIPWAY_TOKEN or the token in {}",
                self.settings.config_path.display()
            )),
            // The pipeline said no (who may approve is in the message): the server's answer.
            _ if status.metadata().contains_key(REFUSAL_HEADER) => {
                Failure::Api(format!("refused by the server: {}", message.trim_start_matches("refused: ")))
            }
            Code::PermissionDenied => Failure::Auth(format!("permission denied: {message}")),
            Code::Unavailable if is_transport(status) => {
                Failure::Unreachable(format!("cannot reach the Slipway admin API at {server}: {message}"))
            }
            code => Failure::Api(format!("{}: {message}", label(code))),
        }
    }
}

fn endpoint(settings: &Settings) -> Result<Endpoint, Failure> {
    let mut endpoint = Endpoint::from_shared(settings.server.clone())
        .map_err(|_| Failure::Usage(format!("{:?} is not a valid server URL", settings.server)))?
        .connect_timeout(Duration::from_secs(5));
    let https = settings.server.starts_with("https://");
    if !https && !settings.server.starts_with("http://") {
        return Err(Failure::Usage(format!(
            "the server URL {:?} must start with http:// or https://",
            settings.server
        )));
    }
    if https {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
        };
        let Some(ca) = &settings.ca_file else {
            return Err(Failure::Usage(format!("https needs ca_file in {}", settings.config_path.display())));
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some((cert, key)) = &settings.identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| Failure::Usage(format!("TLS settings: {}", cause(&e))))?;
    }
    Ok(endpoint)
}

/// The innermost cause, which is the part a person can act on ("Connection refused").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// True when the status comes from the connection rather than from the server.
fn is_transport(status: &Status) -> bool {
    use std::error::Error as _;
    status.source().is_some_and(|s| s.is::<tonic::transport::Error>()) || status.message().contains("transport")
}

fn label(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::FailedPrecondition => "not possible now",
        Code::AlreadyExists => "already done",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "timed out",
        _ => "error",
    }
}

/// JetStream on the NATS server at `url`, for the commands that read NATS directly (`logs`,
/// `delivery`, `catalog show|history`); unreachable within 3 s is [`Failure::Unreachable`].
pub async fn jetstream(url: &str) -> Result<async_nats::jetstream::Context, Failure> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot reach NATS at {url}: {e}")))?;
    Ok(async_nats::jetstream::new(client))
}
