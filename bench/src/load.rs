//! The load generator: `concurrency` keep-alive connections sending signed webhooks, each
//! with a fresh `X-GitHub-Delivery`, for `requests` requests in all. Prints one JSON line.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Target URL.
    #[arg(long)]
    pub url: String,
    /// File holding the body to send.
    #[arg(long)]
    pub body: std::path::PathBuf,
    /// `X-Hub-Signature-256` value for that body.
    #[arg(long)]
    pub signature: String,
    /// Total requests.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Prefix of the delivery ids (unique per run).
    #[arg(long, default_value = "bench")]
    pub run_id: String,
}

/// What one load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let body = bytes::Bytes::from(std::fs::read(&args.body).context("--body")?);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, body, next, errors, args) =
            (client.clone(), body.clone(), next.clone(), errors.clone(), args.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.requests {
                    return latencies;
                }
                let sent = Instant::now();
                let resp = client
                    .post(&args.url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("{}-{n:012}", args.run_id))
                    .header("x-hub-signature-256", &args.signature)
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(args.requests);
    for w in workers {
        all.extend(w.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    let figures = Figures {
        requests: all.len(),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        per_second: all.len() as f64 / seconds,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
