//! A stage's verification after deploy as the catalog writes it (`verification:` of a stage):
//! the checks that decide whether a version, once deployed to the stage, is good. Their fields
//! are Argo Rollouts' AnalysisTemplate metric fields (`successCondition`, `failureLimit`,
//! `count`, `interval`, ...) with the same meaning, so a team's analysis carries over.
//!
//! This crate only describes and validates them, and holds the pure condition language
//! ([`expr`] parses, [`eval`] evaluates); `slipway-verify` runs them.

pub mod eval;
pub mod expr;

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One check of `verification:`, written `- prometheus: {...}`, `- web: {...}`, `- job: {...}`.
///
/// serde_yaml 0.9 reads an externally tagged enum only from a `!tag`, so the map form goes
/// through [`CheckForm`]; the schema is the enum's own (one single-key object of three).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Prometheus(PrometheusCheck),
    Web(WebCheck),
    Job(JobCheck),
}

/// How a [`Check`] is written: exactly one of the three keys.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckForm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prometheus: Option<PrometheusCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    web: Option<WebCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<JobCheck>,
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match CheckForm::deserialize(deserializer)? {
            CheckForm { prometheus: Some(c), web: None, job: None } => Ok(Check::Prometheus(c)),
            CheckForm { prometheus: None, web: Some(c), job: None } => Ok(Check::Web(c)),
            CheckForm { prometheus: None, web: None, job: Some(c) } => Ok(Check::Job(c)),
            _ => Err(serde::de::Error::custom("a check is exactly one of `prometheus:`, `web:` or `job:`")),
        }
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut form = CheckForm { prometheus: None, web: None, job: None };
        match self.clone() {
            Check::Prometheus(c) => form.prometheus = Some(c),
            Check::Web(c) => form.web = Some(c),
            Check::Job(c) => form.job = Some(c),
        }
        form.serialize(serializer)
    }
}

impl Check {
    /// The check's name (unique within a stage; the caller checks that).
    pub fn name(&self) -> &str {
        match self {
            Check::Prometheus(c) => &c.name,
            Check::Web(c) => &c.name,
            Check::Job(c) => &c.name,
        }
    }

    /// The problems of this check, as `(field, reason)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match self {
            Check::Prometheus(c) => c.problems(&mut out),
            Check::Web(c) => c.problems(&mut out),
            Check::Job(c) => c.problems(&mut out),
        }
        out.into_iter().map(|(field, reason)| (field.to_owned(), reason)).collect()
    }
}

/// How a check (or a stage's verification, the worst of its checks) ended: Argo Rollouts'
/// analysis phases. The engine (`slipway-verify`) decides it; the promoter's domain acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

impl Verdict {
    /// `successful`, `failed`, `inconclusive`, `error`: the events' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Successful => "successful",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
        }
    }

    /// Reads the events' spelling; anything else is an error verdict (it cannot pass).
    pub fn parse(text: &str) -> Self {
        match text {
            "successful" => Verdict::Successful,
            "failed" => Verdict::Failed,
            "inconclusive" => Verdict::Inconclusive,
            _ => Verdict::Error,
        }
    }
}

/// A PromQL query measured every `interval` (Argo's `prometheus` provider). `query` and
/// `address` may hold `{app}`, `{stage}`, `{version}` and `{image}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusCheck {
    pub name: String,
    /// The Prometheus base URL (`http://prometheus.monitoring:9090`).
    pub address: String,
    pub query: String,
    /// Time between measurements (`30s`, `5m`).
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Measurements (Successful, Failed or Inconclusive; Errors do not count) after which the
    /// check is Successful. Required in a stage's verification (which must end); the engine
    /// alone measures a check without one until a limit is exceeded or it is stopped.
    #[serde(default)]
    pub count: Option<u32>,
    /// Wait this long after the deploy before the first measurement.
    #[serde(default)]
    pub initial_delay: Option<String>,
    /// expr-lang over `result` (a vector is an array, a scalar a number): `result[0] >= 0.95`.
    #[serde(default)]
    pub success_condition: Option<String>,
    #[serde(default)]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated; negative: failures never fail the check.
    #[serde(default)]
    pub failure_limit: i32,
    /// Inconclusive measurements tolerated.
    #[serde(default)]
    pub inconclusive_limit: i32,
    /// Consecutive Error measurements (no data, query errors) tolerated.
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: i32,
    /// Consecutive successful measurements after which the check is Successful early.
    #[serde(default)]
    pub consecutive_success_limit: Option<i32>,
}

/// An HTTP request whose status (and, with `jsonPath`/`successCondition`, body) is checked
/// once (Argo's `web` provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebCheck {
    pub name: String,
    /// May hold `{app}`, `{stage}`, `{version}`, `{image}`.
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// The status the response must have.
    #[serde(default = "default_status")]
    pub status: u16,
    /// `$.data.ok`, or Argo's `{$.data.ok}`: the part of the JSON body that is `result`.
    #[serde(default)]
    pub json_path: Option<String>,
    /// expr-lang over `result` (the `jsonPath` value, else the parsed body).
    #[serde(default)]
    pub success_condition: Option<String>,
    #[serde(default = "default_web_timeout")]
    pub timeout_seconds: u64,
    /// Further attempts after a connection error or a timeout.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// A Kubernetes Job run to completion (Argo's `job` provider): Complete is success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobCheck {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Values may hold `{app}`, `{stage}`, `{version}`, `{image}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_job_timeout")]
    pub timeout_seconds: u64,
}

fn default_interval() -> String {
    "1m".to_owned()
}
fn default_consecutive_error_limit() -> i32 {
    4
}
fn default_method() -> String {
    "GET".to_owned()
}
fn default_status() -> u16 {
    200
}
fn default_web_timeout() -> u64 {
    10
}
fn default_retries() -> u32 {
    2
}
fn default_namespace() -> String {
    "default".to_owned()
}
fn default_job_timeout() -> u64 {
    600
}

type Problems = Vec<(&'static str, String)>;

impl PrometheusCheck {
    fn problems(&self, out: &mut Problems) {
        url_problem(out, "address", &self.address);
        if self.query.trim().is_empty() {
            out.push(("query", "must not be empty".to_owned()));
        }
        match parse_duration(&self.interval) {
            Ok(d) if d.is_zero() => out.push(("interval", "must be longer than 0".to_owned())),
            Ok(_) => {}
            Err(e) => out.push(("interval", e.to_string())),
        }
        if let Some(Err(e)) = self.initial_delay.as_deref().map(parse_duration) {
            out.push(("initialDelay", e.to_string()));
        }
        // Argo runs a metric without count until its rollout ends; a gate has no such end, so
        // the stage would wait for ever.
        if self.count.unwrap_or(0) == 0 {
            out.push((
                "count",
                "is required (at least 1): a verification must end for the next stage to open".to_owned(),
            ));
        }
        condition_problem(out, "successCondition", self.success_condition.as_deref());
        condition_problem(out, "failureCondition", self.failure_condition.as_deref());
        if self.inconclusive_limit < 0 {
            out.push(("inconclusiveLimit", "must not be negative".to_owned()));
        }
        if self.consecutive_error_limit < 0 {
            out.push(("consecutiveErrorLimit", "must not be negative".to_owned()));
        }
        // As Argo validates: with failures not applicable, only a run of successes can decide.
        let success_applies = self.consecutive_success_limit.is_some_and(|n| n > 0);
        if self.failure_limit < 0 && !success_applies {
            out.push(("failureLimit", "negative needs a consecutiveSuccessLimit of at least 1".to_owned()));
        }
        if self.consecutive_success_limit.is_some_and(|n| n < 0) {
            out.push(("consecutiveSuccessLimit", "must not be negative".to_owned()));
        }
    }
}

impl WebCheck {
    fn problems(&self, out: &mut Problems) {
        url_problem(out, "url", &self.url);
        if !(100..=599).contains(&self.status) {
            out.push(("status", format!("{} is not an HTTP status (100..=599)", self.status)));
        }
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_uppercase()) {
            out.push(("method", format!("{:?} is not an HTTP method such as GET or POST", self.method)));
        }
        if let Some(path) = &self.json_path
            && !json_path_text(path).starts_with('$')
        {
            out.push(("jsonPath", format!("{path:?} must start with `$` (or be Argo's `{{$...}}`)")));
        }
        condition_problem(out, "successCondition", self.success_condition.as_deref());
        if self.timeout_seconds == 0 {
            out.push(("timeoutSeconds", "must be at least 1".to_owned()));
        }
    }
}

impl JobCheck {
    fn problems(&self, out: &mut Problems) {
        if self.image.trim().is_empty() {
            out.push(("image", "must not be empty".to_owned()));
        }
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !dns(&self.namespace) {
            out.push(("namespace", format!("{:?} is not a Kubernetes namespace name", self.namespace)));
        }
        if self.timeout_seconds == 0 {
            out.push(("timeoutSeconds", "must be at least 1".to_owned()));
        }
    }
}

fn url_problem(out: &mut Problems, field: &'static str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        out.push((field, format!("{url:?} must start with http:// or https://")));
    }
}

fn condition_problem(out: &mut Problems, field: &'static str, condition: Option<&str>) {
    if let Some(Err(e)) = condition.map(expr::parse) {
        out.push((field, e.to_string()));
    }
}

/// The JSONPath of a `jsonPath` field without Argo's optional braces (`{$.a}` is `$.a`).
pub fn json_path_text(path: &str) -> &str {
    let path = path.trim();
    path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).map_or(path, str::trim)
}

/// A duration that is not one of Argo's (Go's) forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration such as 30s, 5m, 1h30m or 500ms")]
pub struct BadDuration(pub String);

/// Reads Argo's (Go's) duration form: `30s`, `5m`, `1h30m`, `500ms`, `1.5h`; a bare `0` too.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(text.to_owned());
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_form_is_argos_metric_form() {
        let yaml = "- prometheus:\n    name: success-rate\n    address: http://prometheus:9090\n    \
                    query: sum(rate(x{app=\"{app}\"}[1m]))\n    interval: 30s\n    count: 5\n    \
                    successCondition: result[0] >= 0.95\n    failureLimit: 2\n\
                    - web:\n    name: smoke\n    url: https://{app}.example/healthz\n    jsonPath: '{$.ok}'\n    \
                    successCondition: result == true\n\
                    - job:\n    name: e2e\n    image: tests:1\n    args: [--target, '{stage}']\n";
        let checks: Vec<Check> = serde_yaml::from_str(yaml).expect("checks");
        let Check::Prometheus(p) = &checks[0] else { panic!("{checks:?}") };
        assert_eq!((p.count, p.failure_limit, p.consecutive_error_limit), (Some(5), 2, 4));
        let Check::Web(w) = &checks[1] else { panic!() };
        assert_eq!((w.method.as_str(), w.status, w.timeout_seconds, w.retries), ("GET", 200, 10, 2));
        let Check::Job(j) = &checks[2] else { panic!() };
        assert_eq!((j.namespace.as_str(), j.timeout_seconds), ("default", 600));
        assert_eq!(checks.iter().map(Check::name).collect::<Vec<_>>(), ["success-rate", "smoke", "e2e"]);
        assert!(
            checks.iter().all(|c| c.problems().is_empty()),
            "{:?}",
            checks.iter().map(Check::problems).collect::<Vec<_>>()
        );
        assert!(serde_yaml::from_str::<Vec<Check>>("- web: {name: a, url: http://x, statuss: 200}").is_err());
        assert!(serde_yaml::from_str::<Check>("{}").is_err(), "one kind");
        let yaml_again = serde_yaml::to_string(&checks).unwrap();
        assert_eq!(serde_yaml::from_str::<Vec<Check>>(&yaml_again).unwrap(), checks);
    }

    #[test]
    fn bad_fields_are_problems() {
        let yaml = "prometheus: {name: p, address: prometheus:9090, query: '', interval: 30x, \
                    initialDelay: soon, successCondition: 'result[0] >=', failureLimit: -1}";
        let check: Check = serde_yaml::from_str(yaml).unwrap();
        let fields: Vec<String> = check.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["address", "query", "interval", "initialDelay", "count", "successCondition", "failureLimit"]
        );
        let web: Check = serde_yaml::from_str("web: {name: w, url: ftp://x, status: 700, jsonPath: data}").unwrap();
        let fields: Vec<String> = web.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["url", "status", "jsonPath"]);
        let job: Check = serde_yaml::from_str("job: {name: j, image: '', namespace: Bad_NS}").unwrap();
        assert_eq!(job.problems().len(), 2);
    }

    #[test]
    fn the_schema_is_one_single_key_object_of_three() {
        let schema = serde_json::to_value(schemars::schema_for!(Check)).unwrap();
        let text = schema.to_string();
        for key in ["prometheus", "web", "job", "successCondition", "consecutiveErrorLimit", "jsonPath"] {
            assert!(text.contains(key), "{key} in {text}");
        }
    }

    #[test]
    fn durations_read_as_argo_writes_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "30", "s", "5 m", "1d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(json_path_text("{$.data.ok}"), "$.data.ok");
    }
}
