//! Argo Rollouts' analysis semantics, pure: how a measured value becomes a [`Phase`]
//! ([`Conditions::evaluate`]), how measurements are counted ([`Counters::record`]), and when
//! the counts end the check ([`assess`]). Time and I/O stay with the caller.
//!
//! Counting as Argo does: Successful, Failed and Inconclusive measurements count toward
//! `count` and reset the run of consecutive errors; an Error does not count toward `count`
//! but extends that run. The check ends Failed once failed > failureLimit (unless the limit
//! is negative), Inconclusive once inconclusive > inconclusiveLimit, Error once consecutive
//! errors > consecutiveErrorLimit, and Successful once `count` measurements were taken (or
//! consecutiveSuccessLimit successes in a row).

use slipway_catalog::verify::eval::{self, Value};
use slipway_catalog::verify::expr::{self, Expr};
use slipway_catalog::verify::{Check, PrometheusCheck};

use crate::{Error, Phase, Verdict};

/// A check's limits, as Argo reads a metric's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Counted measurements after which the check is Successful; `None`: until a limit ends it
    /// or it is stopped.
    pub count: Option<u32>,
    /// Negative: failures are not applicable.
    pub failure_limit: i32,
    pub inconclusive_limit: i32,
    pub consecutive_error_limit: i32,
    pub consecutive_success_limit: Option<i32>,
}

impl Limits {
    /// A Prometheus check's limits; `count: 0` means "no count", as in Argo.
    pub fn of_prometheus(check: &PrometheusCheck) -> Self {
        Limits {
            count: check.count.filter(|n| *n > 0),
            failure_limit: check.failure_limit,
            inconclusive_limit: check.inconclusive_limit,
            consecutive_error_limit: check.consecutive_error_limit,
            consecutive_success_limit: check.consecutive_success_limit,
        }
    }

    /// A check's limits. A web or Job check has no interval, which in Argo makes one
    /// measurement the count; its transient errors are retried inside that measurement, so an
    /// Error ends it.
    pub fn of(check: &Check) -> Self {
        match check {
            Check::Prometheus(c) => Self::of_prometheus(c),
            Check::Web(_) | Check::Job(_) => Limits {
                count: Some(1),
                failure_limit: 0,
                inconclusive_limit: 0,
                consecutive_error_limit: 0,
                consecutive_success_limit: None,
            },
        }
    }
}

/// What the measurements so far add up to (Argo's MetricResult counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful + Failed + Inconclusive (Errors do not count).
    pub count: u32,
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub error: u32,
    pub consecutive_error: u32,
    pub consecutive_success: u32,
    /// Every measurement, Errors included.
    pub measurements: u32,
}

impl Counters {
    /// Counts one measurement.
    pub fn record(&mut self, phase: Phase) {
        self.measurements += 1;
        match phase {
            Phase::Successful => {
                self.successful += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success += 1;
            }
            Phase::Failed | Phase::Inconclusive => {
                if phase == Phase::Failed {
                    self.failed += 1;
                } else {
                    self.inconclusive += 1;
                }
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            Phase::Error => {
                self.error += 1;
                self.consecutive_error += 1;
                self.consecutive_success = 0;
            }
        }
    }
}

/// Whether the check has ended after the measurements counted in `counters`, and why; `None`:
/// measure again. `terminating`: the check is being stopped, which Argo treats as success
/// unless a limit was already exceeded.
pub fn assess(limits: &Limits, c: &Counters, terminating: bool) -> Option<(Verdict, String)> {
    if let Some(ended) = exceeded(limits, c) {
        return Some(ended);
    }
    let success_applies = limits.consecutive_success_limit.is_some_and(|n| n > 0);
    if let Some(n) = limits.consecutive_success_limit.filter(|_| success_applies)
        && c.consecutive_success >= n as u32
    {
        return Some((Verdict::Successful, format!("consecutiveSuccessLimit ({n}) reached")));
    }
    if let Some(count) = limits.count
        && c.count >= count
    {
        let failure_applies = limits.failure_limit >= 0;
        return Some(match (failure_applies, success_applies) {
            // Neither limit was reached: the run of successes was too short to pass, and the
            // failures too few to fail.
            (true, true) => (
                Verdict::Inconclusive,
                format!(
                    "count ({count}) reached: consecutiveSuccessLimit ({}) not reached and failureLimit ({}) not exceeded",
                    limits.consecutive_success_limit.unwrap_or(0),
                    limits.failure_limit
                ),
            ),
            (false, true) => (
                Verdict::Failed,
                format!(
                    "count ({count}) reached: consecutiveSuccessLimit ({}) not reached",
                    limits.consecutive_success_limit.unwrap_or(0)
                ),
            ),
            _ => (Verdict::Successful, format!("count ({count}) reached")),
        });
    }
    if terminating {
        let why = if c.measurements == 0 { "stopped before the first measurement" } else { "stopped" };
        return Some((
            Verdict::Successful,
            format!("{why} (a terminated analysis is successful, as in Argo Rollouts)"),
        ));
    }
    None
}

/// Argo's assessMetricFailureInconclusiveOrError: the last limit exceeded wins.
fn exceeded(limits: &Limits, c: &Counters) -> Option<(Verdict, String)> {
    let mut ended = None;
    if limits.failure_limit >= 0 && c.failed as i64 > limits.failure_limit as i64 {
        ended = Some((Verdict::Failed, format!("failed ({}) > failureLimit ({})", c.failed, limits.failure_limit)));
    }
    if c.inconclusive as i64 > limits.inconclusive_limit as i64 {
        let why = format!("inconclusive ({}) > inconclusiveLimit ({})", c.inconclusive, limits.inconclusive_limit);
        ended = Some((Verdict::Inconclusive, why));
    }
    if c.consecutive_error as i64 > limits.consecutive_error_limit as i64 {
        let why = format!(
            "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
            c.consecutive_error, limits.consecutive_error_limit
        );
        ended = Some((Verdict::Error, why));
    }
    ended
}

/// A check's parsed `successCondition` and `failureCondition`.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    success: Option<(String, Expr)>,
    failure: Option<(String, Expr)>,
}

impl Conditions {
    /// Parses both (either may be absent).
    pub fn parse(success: Option<&str>, failure: Option<&str>) -> Result<Self, Error> {
        let one = |field: &'static str, text: Option<&str>| {
            text.map(|t| {
                expr::parse(t).map(|e| (t.to_owned(), e)).map_err(|source| Error::Condition {
                    field,
                    condition: t.to_owned(),
                    source,
                })
            })
            .transpose()
        };
        Ok(Conditions { success: one("successCondition", success)?, failure: one("failureCondition", failure)? })
    }

    /// Argo's EvaluateResult: no condition is success; a success condition alone fails when
    /// false; a failure condition alone succeeds when false; both false is Inconclusive. A
    /// condition that cannot be evaluated is an error (an Error measurement).
    pub fn evaluate(&self, result: &Value) -> Result<Phase, Error> {
        let eval = |field: &'static str, cond: &Option<(String, Expr)>| {
            cond.as_ref()
                .map(|(text, e)| {
                    eval::condition(e, result).map_err(|source| Error::Condition {
                        field,
                        condition: text.clone(),
                        source,
                    })
                })
                .transpose()
        };
        let success = eval("successCondition", &self.success)?;
        let failure = eval("failureCondition", &self.failure)?;
        Ok(match (success, failure) {
            (None, None) => Phase::Successful,
            (_, Some(true)) => Phase::Failed,
            (Some(false), None) => Phase::Failed,
            (Some(true), _) | (None, Some(false)) => Phase::Successful,
            (Some(false), Some(false)) => Phase::Inconclusive,
        })
    }
}

#[cfg(test)]
mod tests;
