//! The handler of `scan.requested`: the promoter wants a fresh report of an image already
//! pushed (its newest one is older than a stage's `max_age_hours`, or there is none). The
//! configured scanner runs again on the same digest; the answer (`build.scanned` or
//! `build.scan-failed`, carrying the request id) goes out once per request through the outbox.

use crate::scan::{Scanner, Target};
use crate::store::Store;
use slipway_mesh::v1::event::Payload;
use slipway_runtime::consumer::{Delivery, Outcome};
use std::sync::Arc;
use tracing::instrument;

/// The durable consumer of re-scan requests all builder replicas share.
pub const DURABLE: &str = "builder-scans";

/// What a re-scan needs.
pub struct Rescans {
    pub store: Store,
    pub scanner: Scanner,
}

impl Rescans {
    /// Handles one delivery of `scan.requested`.
    #[instrument(skip_all, fields(event.id = %delivery.envelope.id))]
    pub async fn handle(self: Arc<Self>, delivery: Delivery) -> Outcome {
        let Payload::ScanRequested(request) = &delivery.payload else {
            return Outcome::Reject(format!("{} is not a scan request", delivery.envelope.kind));
        };
        if slipway_mesh::names::AppName::parse(&request.app).is_err() {
            return Outcome::Reject(format!("scan request for an invalid app name {:?}", request.app));
        }
        match self.store.rescanned(&delivery.envelope.id).await {
            Ok(true) => return Outcome::Ack,
            Ok(false) => {}
            Err(e) => return Outcome::Retry(format!("inbox: {e}")),
        }
        let target = Target {
            build_id: request.build_id.clone(),
            app: request.app.clone(),
            image: request.image.clone().unwrap_or_default(),
            sbom_digest: request.sbom_digest.clone(),
            request_id: request.request_id.clone(),
        };
        tracing::info!(app = %request.app, reason = %request.reason, "re-scan requested");
        let scan = self.scanner.scan(target).await;
        tracing::info!(app = %request.app, "{}", crate::scan::summary(&scan));
        match self.store.rescan_done(&delivery.envelope.id, &scan).await {
            Ok(()) => Outcome::Ack,
            Err(e) => Outcome::Retry(format!("record re-scan: {e}")),
        }
    }
}
