//! The admin service as served: the generated `AdminServiceServer` (behind the token
//! interceptor) for every method but `Watch`, which this route serves with a codec that sends
//! each event's protobuf bytes as the hub encoded them ([`Encoded`]).
//!
//! The generated server would encode every `v1::Event` once per watcher; with a thousand
//! watchers that is a thousand clones and encodings of each event. Here a watcher's stream
//! carries shared bytes, and the wire format is the same `slipway.v1.Event` message, so
//! clients see no difference. The request goes through the same interceptor and handler
//! checks as the generated path ([`AdminApi::watch_encoded`]).

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::BufMut as _;
use slipway_mesh::v1::{self, admin_service_server::AdminServiceServer};
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body as HttpBody, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::service::Interceptor as _;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::auth::TokenTable;
use super::service::AdminApi;
use super::watch::{Encoded, EventStream};

const WATCH: &str = "/slipway.v1.AdminService/Watch";

/// The admin service with `Watch` served from encoded events.
#[derive(Clone)]
pub struct AdminRoute {
    inner: InterceptedService<AdminServiceServer<AdminApi>, TokenTable>,
    watch: EncodedWatch,
}

impl AdminRoute {
    pub fn new(api: AdminApi, tokens: TokenTable) -> Self {
        let watch = EncodedWatch { api: api.clone(), tokens: tokens.clone() };
        AdminRoute { inner: AdminServiceServer::with_interceptor(api, tokens), watch }
    }
}

impl NamedService for AdminRoute {
    const NAME: &'static str = <AdminServiceServer<AdminApi> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for AdminRoute
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != WATCH {
            let response = self.inner.call(request);
            return Box::pin(async move {
                match response.await {
                    Ok(response) => Ok(response.map(Body::new)),
                    Err(never) => match never {},
                }
            });
        }
        let watch = self.watch.clone();
        Box::pin(async move { Ok(Grpc::new(WatchCodec).server_streaming(watch, request).await) })
    }
}

/// `Watch` as a server-streaming service of encoded events.
#[derive(Clone)]
struct EncodedWatch {
    api: AdminApi,
    tokens: TokenTable,
}

impl ServerStreamingService<v1::WatchRequest> for EncodedWatch {
    type Response = Encoded;
    type ResponseStream = EventStream<Encoded>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<v1::WatchRequest>) -> Self::Future {
        let (api, mut tokens) = (self.api.clone(), self.tokens.clone());
        Box::pin(async move {
            // The interceptor the generated path runs: it puts the caller in the extensions.
            let (metadata, extensions, message) = request.into_parts();
            let (metadata, extensions, ()) = tokens.call(Request::from_parts(metadata, extensions, ()))?.into_parts();
            api.watch_encoded(Request::from_parts(metadata, extensions, message)).await
        })
    }
}

/// Decodes `WatchRequest`s as prost does; encodes [`Encoded`] events by copying their bytes.
struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = Encoded;
    type Decode = v1::WatchRequest;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<v1::WatchRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<v1::Event, v1::WatchRequest>::default().decoder()
    }
}

struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}
