//! Verification after deploy: a stage's checks (`slipway_catalog::verify::Check`) run against
//! one deployed version (a [`Subject`]) until each reaches a [`Verdict`], with Argo Rollouts'
//! analysis semantics, so an AnalysisTemplate's limits mean here what they mean there.
//!
//! A check flows through [`Verifier::run`]: after its initial delay a provider takes a
//! [`Measurement`] every interval ([`prometheus`] queries, [`web`] requests, [`job`]s run in
//! the cluster), each condition is evaluated against the measured `result`, each measurement
//! is handed to the caller as it is taken and counted ([`assess::Counters`]), and
//! [`assess::assess`] decides after each one whether the check has ended. [`rollout`] reads
//! an Argo Rollouts `Rollout`'s health for the deploy that precedes verification.

pub mod assess;
mod error;
pub mod job;
pub mod prometheus;
pub mod rollout;
mod run;
pub mod web;

pub use error::{Error, Result};
pub use run::Verifier;

/// The deployed version a check verifies; its fields fill the `{app}`, `{stage}`,
/// `{version}` and `{image}` placeholders of queries, URLs and Job env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub app: String,
    pub stage: String,
    /// The image tag.
    pub version: String,
    /// The full image reference.
    pub image: String,
}

/// Fills `{app}`, `{stage}`, `{version}` and `{image}` in `template`; other braces (PromQL's
/// label matchers) stay as they are.
pub fn render(template: &str, subject: &Subject) -> String {
    template
        .replace("{app}", &subject.app)
        .replace("{stage}", &subject.stage)
        .replace("{version}", &subject.version)
        .replace("{image}", &subject.image)
}

/// What one measurement found (Argo's measurement phases, the completed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Successful,
    Failed,
    Inconclusive,
    /// The measurement could not be taken or its condition not evaluated (no data, the
    /// provider down): counted apart, it neither passes nor fails the check by itself.
    Error,
}

impl Phase {
    /// `successful`, `failed`, `inconclusive`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Successful => "successful",
            Phase::Failed => "failed",
            Phase::Inconclusive => "inconclusive",
            Phase::Error => "error",
        }
    }
}

/// One measurement of a check, as it is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub check: String,
    pub phase: Phase,
    /// What was measured, short (`[0.99]`, `200`, `Complete`).
    pub value: String,
    pub message: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// How a check ended (the catalog's type, shared with the promoter's domain).
pub use slipway_catalog::verify::Verdict;

/// A check's end: its verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub check: String,
    pub verdict: Verdict,
    /// Why, as Argo words it: `failed (3) > failureLimit (2)`, `count (5) reached`.
    pub message: String,
    /// How many measurements were taken (Errors included).
    pub measurements: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_promql_braces_kept() {
        let subject = Subject {
            app: "hello".into(),
            stage: "prod".into(),
            version: "1.2.3".into(),
            image: "r.example/hello:1.2.3".into(),
        };
        assert_eq!(
            render(r#"sum(rate(x{app="{app}",stage="{stage}"}[1m])) # {version} {image} {other}"#, &subject),
            r#"sum(rate(x{app="hello",stage="prod"}[1m])) # 1.2.3 r.example/hello:1.2.3 {other}"#
        );
    }
}
