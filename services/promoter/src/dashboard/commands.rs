//! The page's buttons: `POST /api/commands/{approve|reject|promote|rollback|hold|release}`
//! with the admin API's request message in proto3 JSON and `Authorization: Bearer`. The token
//! is authenticated by the admin API's own [`TokenTable`] and the request handed to the admin
//! API's own handler, so roles, name checks, the stage's approvers and every refusal are
//! exactly the gRPC ones (as HTTP statuses).

use std::future::Future;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use slipway_mesh::v1::admin_service_server::AdminService as _;
use tonic::metadata::MetadataMap;

use super::ApiError;
use crate::grpc::{AdminApi, Caller, TokenTable};

/// The caller the request's `Authorization` header names, as the gRPC interceptor finds it.
pub(super) fn authenticate(tokens: &TokenTable, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let mut auth = HeaderMap::new();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        auth.insert(header::AUTHORIZATION, value.clone());
    }
    let mut request = tonic::Request::new(());
    *request.metadata_mut() = MetadataMap::from_headers(auth);
    Ok(tokens.authenticate(&request)?)
}

/// Decodes `body` as `Req` and runs `handler` as `caller`.
async fn call<Req, Resp, Fut>(
    api: &AdminApi,
    caller: Caller,
    body: &[u8],
    what: &str,
    handler: impl FnOnce(AdminApi, tonic::Request<Req>) -> Fut,
) -> Result<Response, ApiError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let body: Req = serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("the body is not a {what}: {e}")))?;
    let mut request = tonic::Request::new(body);
    request.extensions_mut().insert(caller);
    let response = handler(api.clone(), request).await?.into_inner();
    Ok(axum::Json(response).into_response())
}

/// Runs command `kind` with `body`, as the token in `headers`.
pub(super) async fn run(
    api: &AdminApi,
    tokens: &TokenTable,
    kind: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    // Unknown commands are refused before the token is looked at: nothing to authorize.
    if !["approve", "reject", "promote", "rollback", "hold", "release"].contains(&kind) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no command {kind:?}")));
    }
    let caller = authenticate(tokens, headers)?;
    match kind {
        "approve" => call(api, caller, body, "ApproveRequest", |a, r| async move { a.approve(r).await }).await,
        "reject" => call(api, caller, body, "RejectRequest", |a, r| async move { a.reject(r).await }).await,
        "promote" => call(api, caller, body, "PromoteRequest", |a, r| async move { a.promote(r).await }).await,
        "rollback" => call(api, caller, body, "RollbackRequest", |a, r| async move { a.rollback(r).await }).await,
        "hold" => call(api, caller, body, "HoldRequest", |a, r| async move { a.hold(r).await }).await,
        _ => call(api, caller, body, "ReleaseRequest", |a, r| async move { a.release(r).await }).await,
    }
}
