//! The promoter's admin gRPC API as `slipctl` reaches it: a channel to the demo's admin port
//! and a client that sends the demo token.

use std::time::Duration;

use slipway_proto::v1::admin_service_client::AdminServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Channel;

use crate::demo::DEMO_TOKEN;

/// Adds the demo token, as `SLIPWAY_TOKEN` does for slipctl.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The admin API client with the demo token.
pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

pub fn client(channel: &Channel) -> Client {
    let bearer = format!("Bearer {DEMO_TOKEN}").parse().expect("ascii token");
    AdminServiceClient::with_interceptor(channel.clone(), Bearer(bearer))
}

/// Connects to the admin API (it is served once the promoter is ready).
pub async fn connect(url: &str) -> Channel {
    let endpoint = Channel::from_shared(url.to_owned()).expect("url").timeout(Duration::from_secs(10));
    for _ in 0..150 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the admin API at {url} never answered");
}
