//! [`Verifier::run`]: one check from its initial delay to its verdict, a measurement every
//! interval, each handed to the caller as it is taken, the counts assessed after each.

use std::time::Duration;

use slipway_catalog::verify::{Check, parse_duration};
use tokio_util::sync::CancellationToken;

use crate::assess::{Counters, Limits, assess};
use crate::{Error, Measurement, Outcome, Phase, Result, Subject, Verdict};

/// Between measurements of a check that has no interval of its own (Argo's error retry
/// interval); web and Job checks end after one measurement, so it is rarely waited.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// What a provider measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Taken {
    pub phase: Phase,
    pub value: String,
    pub message: String,
}

impl Taken {
    /// An Error measurement: the value (if any was read) and what went wrong.
    pub fn error(value: String, error: impl std::fmt::Display) -> Self {
        Taken { phase: Phase::Error, value, message: error.to_string() }
    }
}

/// Runs checks; holds the HTTP client and, for Job checks, the Kubernetes client.
#[derive(Clone)]
pub struct Verifier {
    http: reqwest::Client,
    kube: Option<kube::Client>,
}

impl Verifier {
    /// Builds the HTTP client (never through an `HTTP_PROXY`: Prometheus and the checked
    /// services are usually in-cluster addresses). Without `kube`, Job checks end as Error.
    pub fn new(kube: Option<kube::Client>) -> Result<Self> {
        let http = reqwest::Client::builder().no_proxy().build().map_err(Error::Client)?;
        Ok(Verifier { http, kube })
    }

    /// Runs one check to its verdict: initial delay, then a measurement every interval until
    /// assessment completes; each measurement goes to `on_measurement` as it is taken. When
    /// `stop` fires, returns as Argo does when terminating: Successful unless a limit was
    /// already exceeded (a Job in flight is deleted first).
    pub async fn run(
        &self,
        check: &Check,
        subject: &Subject,
        on_measurement: &mut (dyn FnMut(&Measurement) + Send),
        stop: &CancellationToken,
    ) -> Outcome {
        let name = check.name().to_owned();
        let outcome = |verdict: Verdict, message: String, measurements: u32| Outcome {
            check: name.clone(),
            verdict,
            message,
            measurements,
        };
        let (interval, delay) = match timing(check) {
            Ok(timing) => timing,
            Err(e) => return outcome(Verdict::Error, e.to_string(), 0),
        };
        let limits = Limits::of(check);
        let mut counters = Counters::default();
        let end = |counters: &Counters, terminating: bool| {
            assess(&limits, counters, terminating).map(|(verdict, why)| outcome(verdict, why, counters.measurements))
        };
        if !delay.is_zero() && sleep_or_stop(delay, stop).await.is_err() {
            return end(&counters, true).unwrap_or_else(|| outcome(Verdict::Successful, "stopped".into(), 0));
        }
        loop {
            let Some(taken) = self.measure(check, subject, stop).await else {
                return end(&counters, true).unwrap_or_else(|| outcome(Verdict::Successful, "stopped".into(), 0));
            };
            let measurement = Measurement {
                check: name.clone(),
                phase: taken.phase,
                value: taken.value,
                message: taken.message,
                at: chrono::Utc::now(),
            };
            tracing::debug!(check = %name, phase = measurement.phase.as_str(), value = %measurement.value, "measured");
            on_measurement(&measurement);
            counters.record(measurement.phase);
            if let Some(outcome) = end(&counters, false) {
                return outcome;
            }
            if sleep_or_stop(interval, stop).await.is_err() {
                return end(&counters, true).unwrap_or_else(|| outcome(Verdict::Successful, "stopped".into(), 0));
            }
        }
    }

    /// One measurement; `None` when `stop` fired first (a Job is deleted before that).
    async fn measure(&self, check: &Check, subject: &Subject, stop: &CancellationToken) -> Option<Taken> {
        let measuring = async {
            match check {
                Check::Prometheus(c) => Some(crate::prometheus::measure(&self.http, c, subject).await),
                Check::Web(c) => Some(crate::web::measure(&self.http, c, subject).await),
                Check::Job(c) => match &self.kube {
                    Some(kube) => crate::job::measure(kube, c, subject, stop).await,
                    None => Some(Taken::error(String::new(), Error::NoKube)),
                },
            }
        };
        // A Job check watches `stop` itself, to delete its Job; the others just stop.
        tokio::select! {
            taken = measuring => taken,
            () = stop.cancelled(), if !matches!(check, Check::Job(_)) => None,
        }
    }
}

/// A check's interval and initial delay.
fn timing(check: &Check) -> Result<(Duration, Duration)> {
    let Check::Prometheus(c) = check else { return Ok((DEFAULT_INTERVAL, Duration::ZERO)) };
    let invalid =
        |field| move |e: slipway_catalog::verify::BadDuration| Error::Invalid { field, reason: e.to_string() };
    let interval = parse_duration(&c.interval).map_err(invalid("interval"))?;
    let delay = c.initial_delay.as_deref().map(parse_duration).transpose().map_err(invalid("initialDelay"))?;
    Ok((interval, delay.unwrap_or_default()))
}

/// Sleeps for `duration`; `Err` if `stop` fired first.
async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> Result<(), ()> {
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(()),
        () = stop.cancelled() => Err(()),
    }
}
