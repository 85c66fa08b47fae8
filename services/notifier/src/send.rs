//! Executing a provider's request: one attempt at a time, classified as sent, worth
//! retrying (429, 5xx, timeouts, GitHub's rate limit; with the remote's `Retry-After`), or
//! failed for good (any other 4xx). A per-destination [`RateLimiter`] spaces posts out, and
//! [`delay`] turns the retry policy into the wait before the next attempt.
//!
//! Error texts are safe to log and publish: reqwest errors are stripped of their URL and every
//! text passes through [`Destination::redact`].

use crate::config::RetryConfig;
use crate::destination::Destination;
use crate::providers::Request;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx; the response body (GitHub returns the created object).
    Sent {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// Worth another try, after at least `after` when the remote said so.
    Retry {
        /// What happened (redacted).
        error: String,
        /// The remote's `Retry-After` (or rate-limit reset).
        after: Option<Duration>,
    },
    /// Will not work however often it is tried.
    Fail(String),
}

/// Sends `req` once.
pub async fn execute(client: &reqwest::Client, dest: &Destination, req: &Request) -> Attempt {
    let mut builder = client
        .request(req.method.clone(), &req.url)
        .timeout(dest.timeout)
        .header("content-type", "application/json")
        .body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(*name, value);
    }
    let response = match builder.send().await {
        Ok(r) => r,
        // Connection refused, timeout, TLS: the remote may be back soon. No URL in the text.
        Err(e) => return Attempt::Retry { error: dest.redact(&e.without_url().to_string()), after: None },
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    classify(dest, status, &headers, body)
}

fn classify(dest: &Destination, status: u16, headers: &reqwest::header::HeaderMap, body: String) -> Attempt {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let error = || dest.redact(&format!("HTTP {status}: {}", body.trim()));
    if (200..300).contains(&status) {
        return Attempt::Sent { status, body };
    }
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    // GitHub's primary rate limit: 403/429 with x-ratelimit-remaining 0 and a reset time.
    let github_limited = header("x-ratelimit-remaining") == Some("0");
    if status == 429 || status == 408 || status == 425 || status >= 500 || (status == 403 && github_limited) {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|at| Duration::from_secs(u64::try_from(at - chrono::Utc::now().timestamp()).unwrap_or(0)));
        return Attempt::Retry { error: error(), after: retry_after.or(if github_limited { reset } else { None }) };
    }
    Attempt::Fail(error())
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// The wait before attempt `next` (2 = first retry): exponential backoff with jitter (between
/// half and all of it), but never shorter than the remote's `Retry-After`; both capped at
/// `retry.max_ms`.
pub fn delay(retry: &RetryConfig, next: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let backoff = retry.backoff(next).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    let cap = Duration::from_millis(retry.max_ms);
    backoff.max(retry_after.unwrap_or(Duration::ZERO)).min(cap)
}

/// Spaces posts to one destination at least `1 / rate` apart, across all tasks.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_sec` posts per second; 0 is no limit.
    pub fn new(per_sec: f64) -> Self {
        let interval = (per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / per_sec));
        Self { interval, next: Mutex::new(None) }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let Some(interval) = self.interval else { return };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("t").with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Thu, 01 Jan 2026 00:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn delay_honours_retry_after_and_caps() {
        let r = RetryConfig { attempts: 5, base_ms: 100, max_ms: 2000 };
        assert_eq!(delay(&r, 2, None, 1.0), Duration::from_millis(100));
        assert_eq!(delay(&r, 2, None, 0.0), Duration::from_millis(50));
        assert_eq!(delay(&r, 3, None, 1.0), Duration::from_millis(200));
        assert_eq!(delay(&r, 2, Some(Duration::from_secs(1)), 0.0), Duration::from_secs(1));
        assert_eq!(delay(&r, 2, Some(Duration::from_secs(30)), 0.0), Duration::from_secs(2));
    }

    fn dest() -> Destination {
        let cfg: crate::destination::DestinationConfig = serde_json::from_value(serde_json::json!({
            "name": "d", "provider": "slack", "url": "https://hooks.example/services/T1/B2/secretsecret"
        }))
        .expect("cfg");
        Destination::resolve(&cfg, "destinations[0]").expect("valid")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn responses_are_classified() {
        let d = dest();
        assert!(matches!(classify(&d, 200, &headers(&[]), "ok".into()), Attempt::Sent { status: 200, .. }));
        assert_eq!(
            classify(&d, 429, &headers(&[("retry-after", "7")]), "rate_limited".into()),
            Attempt::Retry { error: "HTTP 429: rate_limited".into(), after: Some(Duration::from_secs(7)) }
        );
        assert!(matches!(classify(&d, 502, &headers(&[]), String::new()), Attempt::Retry { after: None, .. }));
        // GitHub's rate limit is a 403 with no requests left.
        let limited = headers(&[("x-ratelimit-remaining", "0"), ("retry-after", "2")]);
        assert!(matches!(classify(&d, 403, &limited, String::new()), Attempt::Retry { .. }));
        assert!(matches!(classify(&d, 403, &headers(&[]), "forbidden".into()), Attempt::Fail(_)));
        assert_eq!(
            classify(&d, 404, &headers(&[]), "no_service for /services/T1/B2/secretsecret".into()),
            Attempt::Fail("HTTP 404: no_service for <redacted>".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_posts() {
        let l = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        let unlimited = RateLimiter::new(0.0);
        unlimited.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}
