//! Slipway's protobuf contract, generated at build time from `slipway/v1/*.proto`.
//!
//! Event payloads (`v1::SourcePush`, `v1::BuildSucceeded`, ...) are prost messages with
//! proto3-JSON serde impls (pbjson), so the same type is the NATS JSON body and the
//! gRPC message. `v1::admin_service_server` / `v1::admin_service_client` are the admin API.

/// Version 1 of the contract.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("slipway.v1");
    include!(concat!(env!("OUT_DIR"), "/slipway.v1.serde.rs"));
}

/// Admin API metadata key set on a pipeline's refusal, holding its reason (`not-allowed`,
/// `self-approval`, ...): it tells such a refusal from a token or role the API did not accept,
/// which share `PERMISSION_DENIED`.
pub const REFUSAL_HEADER: &str = "slipway-refusal";

/// The encoded `FileDescriptorSet` of the contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/slipway_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn timestamps_and_enums_use_proto3_json() {
        let push = v1::Commit {
            sha: "a".repeat(40),
            timestamp: Some(pbjson_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            ..Default::default()
        };
        let json = serde_json::to_value(&push).expect("serialize");
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20+00:00");
        let pr = v1::SourcePullRequest {
            action: v1::PullRequestAction::Opened as i32,
            head_sha: "b".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&pr).expect("serialize");
        assert_eq!(json["action"], "PULL_REQUEST_ACTION_OPENED");
        assert_eq!(json["headSha"], "b");
        let back: v1::SourcePullRequest = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, pr);
    }
}
