//! The verifier: runs a stage's verification checks when the promoter asks
//! (`verification.requested`, on durable [`DURABLE`]) and reports every measurement
//! (`verification.measured`) and the verdict (`verification.completed`), which the promoter's
//! decision turns into the next stage opening, a rollback, or a run waiting for a person.
//!
//! The checks themselves (Prometheus queries with Argo Rollouts' analysis semantics, web
//! requests, Kubernetes Jobs) are [`slipway_verify`]'s. A check runs for `count × interval`, far
//! longer than a usual handler: the consumer loop reports progress meanwhile, and a replica
//! that stops hands the request to another one, which starts its checks over.

use std::sync::Arc;

use futures::future::join_all;
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1::{self, event::Payload};
use slipway_mesh::{EventId, EventKind};
use slipway_runtime::consumer::{ConsumerSpec, Delivery, Outcome};
use slipway_runtime::jetstream::Publisher;
use slipway_runtime::service::Running;
use slipway_verify::{Measurement, Subject, Verdict, Verifier};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;

/// Durable consumer of `verification.requested`, shared by the promoter's replicas.
pub const DURABLE: &str = "promoter-verify";

/// Requests verified at once by one replica.
const IN_FLIGHT: usize = 32;

/// Starts the verifier as one of the service's tasks. `kube` is the health gate's client;
/// without one (no stage's health is read from the cluster), `job` checks use the client
/// `health.kube_url`, the in-cluster account or the kubeconfig give, if any.
///
/// The HTTP and Kubernetes clients are made for the first request with checks to run, not at
/// start: a promoter whose stages verify nothing never loads their code (TLS, kubeconfig).
pub async fn spawn(config: &Config, apps: crate::catalog::Apps, kube: Option<kube::Client>, running: &Running) {
    let spec = ConsumerSpec::new(DURABLE, &[EventKind::VerificationRequested.filter()], &config.nats);
    let checks = Arc::new(Checks {
        apps,
        verifier: tokio::sync::OnceCell::new(),
        kube,
        health: config.health.clone(),
        publisher: running.ctx.publisher.clone(),
        stop: running.shutdown.clone(),
    });
    let consumer = running.clone();
    let span = tracing::info_span!("verifier");
    running.spawn(
        "verifier",
        async move { consumer.consume(&spec, IN_FLIGHT, move |d| checks.clone().handle(d)).await }.instrument(span),
    );
}

struct Checks {
    apps: crate::catalog::Apps,
    /// Made by [`Checks::verifier`] for the first request that has checks.
    verifier: tokio::sync::OnceCell<Verifier>,
    /// The health gate's Kubernetes client, if it has one.
    kube: Option<kube::Client>,
    health: crate::health::HealthConfig,
    publisher: Publisher,
    stop: CancellationToken,
}

impl Checks {
    /// The verifier, made once. Without a Kubernetes client, `job` checks end as errors.
    async fn verifier(&self) -> Result<&Verifier, slipway_verify::Error> {
        self.verifier
            .get_or_try_init(|| async {
                let kube = match &self.kube {
                    Some(client) => Some(client.clone()),
                    None => match crate::health::watch::client(&self.health).await {
                        Ok(client) => Some(client),
                        Err(e) => {
                            tracing::info!(error = %e, "no Kubernetes client: job checks will end as errors");
                            None
                        }
                    },
                };
                Verifier::new(kube)
            })
            .await
    }

    async fn handle(self: Arc<Self>, delivery: Delivery) -> Outcome {
        let Payload::VerificationRequested(request) = &delivery.payload else { return Outcome::Ack };
        let (app, stage) = match (AppName::parse(&request.app), EnvName::parse(&request.stage)) {
            (Ok(app), Ok(stage)) => (app, stage),
            _ => return Outcome::Reject(format!("bad app or stage in {}", delivery.envelope.id)),
        };
        let pipeline = self.apps.get().pipeline(app.as_str());
        let checks = pipeline.stage(stage.as_str()).map(|(_, cfg)| cfg.verification.clone()).unwrap_or_default();
        let verifier = if checks.is_empty() {
            None
        } else {
            match self.verifier().await {
                Ok(verifier) => Some(verifier),
                // The HTTP client could not be made: nothing can be verified here, so the
                // request waits for another replica (or this one, once it can).
                Err(e) => {
                    tracing::error!(error = %e, "verification checks cannot run");
                    return Outcome::Retry(format!("verification checks cannot run: {e}"));
                }
            }
        };
        let image = request.image.clone().unwrap_or_default();
        let subject = Subject {
            app: app.to_string(),
            stage: stage.to_string(),
            version: image.tag.clone(),
            image: image_ref(&image),
        };
        let runs = checks.iter().filter_map(|check| {
            let verifier = verifier?;
            let this = self.clone();
            let (subject, request) = (subject.clone(), request.clone());
            Some(async move {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Measurement>();
                let publishing = {
                    let this = this.clone();
                    let request = request.clone();
                    tokio::spawn(async move {
                        while let Some(m) = rx.recv().await {
                            this.measured(&request, &m).await;
                        }
                    })
                };
                let mut report = move |m: &Measurement| {
                    let _ = tx.send(m.clone());
                };
                let outcome = verifier.run(check, &subject, &mut report, &this.stop).await;
                drop(report);
                let _ = publishing.await;
                outcome
            })
        });
        let outcomes = join_all(runs).await;
        if self.stop.is_cancelled() {
            return Outcome::Retry("shutting down; another replica runs the checks".into());
        }
        let verdict = worst(outcomes.iter().map(|o| o.verdict));
        let message = outcomes
            .iter()
            .filter(|o| o.verdict != Verdict::Successful)
            .map(|o| format!("{}: {}", o.check, o.message))
            .collect::<Vec<_>>()
            .join("; ");
        let completed = v1::VerificationCompleted {
            request_id: request.request_id.clone(),
            promotion_id: request.promotion_id.clone(),
            app: request.app.clone(),
            stage: request.stage.clone(),
            image: request.image.clone(),
            verdict: verdict.as_str().to_owned(),
            message: if checks.is_empty() { "no checks in force for this stage".into() } else { message },
            checks: outcomes
                .iter()
                .map(|o| v1::CheckOutcome {
                    check: o.check.clone(),
                    verdict: o.verdict.as_str().to_owned(),
                    message: o.message.clone(),
                    measurements: o.measurements,
                })
                .collect(),
            requested_by: request.requested_by.clone(),
        };
        metrics::counter!("slipway_promoter_verifications_total", "stage" => request.stage.clone(), "verdict" => verdict.as_str())
            .increment(1);
        let id = crate::health::verdict_id(&request.request_id, "verified");
        match self.publisher.publish_with_id(id, &completed).await {
            Ok(_) => Outcome::Ack,
            Err(e) => Outcome::Retry(format!("publishing verification.completed: {e}")),
        }
    }

    async fn measured(&self, request: &v1::VerificationRequested, m: &Measurement) {
        let event = v1::VerificationMeasured {
            request_id: request.request_id.clone(),
            promotion_id: request.promotion_id.clone(),
            app: request.app.clone(),
            stage: request.stage.clone(),
            check: m.check.clone(),
            phase: m.phase.as_str().to_owned(),
            value: m.value.clone(),
            message: m.message.clone(),
            measured_at: Some(pbjson_types::Timestamp {
                seconds: m.at.timestamp(),
                nanos: i32::try_from(m.at.timestamp_subsec_nanos()).unwrap_or(0),
            }),
        };
        // A measurement is for people watching; losing one does not change the verdict.
        if let Err(e) = self.publisher.publish_with_id(EventId::new(), &event).await {
            tracing::warn!(error = %e, check = %m.check, "measurement not published");
        }
    }
}

/// The verdict of several checks: any failure fails, then any error, then any inconclusive.
fn worst(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    let rank = |v: Verdict| match v {
        Verdict::Failed => 3,
        Verdict::Error => 2,
        Verdict::Inconclusive => 1,
        Verdict::Successful => 0,
    };
    verdicts.max_by_key(|v| rank(*v)).unwrap_or(Verdict::Successful)
}

/// `repository:tag`, or `repository@digest` when the digest is known.
fn image_ref(image: &v1::ImageRef) -> String {
    if image.digest.is_empty() {
        format!("{}:{}", image.repository, image.tag)
    } else {
        format!("{}@{}", image.repository, image.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins() {
        use Verdict::*;
        assert_eq!(worst([Successful, Successful].into_iter()), Successful);
        assert_eq!(worst([Successful, Inconclusive].into_iter()), Inconclusive);
        assert_eq!(worst([Inconclusive, Error, Successful].into_iter()), Error);
        assert_eq!(worst([Error, Failed].into_iter()), Failed);
        assert_eq!(worst(std::iter::empty()), Successful);
    }
}
