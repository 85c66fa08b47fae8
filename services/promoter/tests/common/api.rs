//! A gRPC client of the promoter's admin API that sends `authorization` exactly as given (or
//! not at all), and the wait until the API serves.

use std::time::Duration;

use slipway_mesh::v1::admin_service_client::AdminServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Channel;

/// Sends `authorization` exactly as given, or none.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = AdminServiceClient<InterceptedService<Channel, Auth>>;

/// A client sending `authorization: <auth>` (the whole value, e.g. `Bearer <token>`).
pub fn client(channel: &Channel, auth: Option<&str>) -> Client {
    AdminServiceClient::with_interceptor(channel.clone(), Auth(auth.map(|a| a.parse().expect("ascii"))))
}

/// A client with `token` as its bearer token.
pub fn bearer(channel: &Channel, token: &str) -> Client {
    client(channel, Some(&format!("Bearer {token}")))
}

/// Connects once the promoter's health service reports the admin service serving.
pub async fn connect(api: Option<std::net::SocketAddr>) -> Channel {
    let url = format!("http://{}", api.expect("the admin API is served"));
    let endpoint = Channel::from_shared(url).expect("url").timeout(Duration::from_secs(5));
    for _ in 0..150 {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let check = tonic_health::pb::HealthCheckRequest { service: "slipway.v1.AdminService".into() };
            if let Ok(answer) = health.check(check).await
                && answer.into_inner().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
            {
                return channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the admin API never served");
}
