//! SIGTERM/SIGINT become the cancellation of one root token.
//!
//! `main` creates the token with [`root_token`] and hands children of it to every task; a
//! cancelled task finishes the message in hand and stops. [`with_grace`] bounds how long
//! draining may take, since Kubernetes kills the pod after its grace period anyway.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT.
///
/// Must be called inside a Tokio runtime. Should the signal handlers fail to install, the
/// error is logged and the token is never cancelled by signals; the default signal actions
/// then still terminate the process.
pub fn root_token() -> CancellationToken {
    let token = CancellationToken::new();
    // Registered before returning, so a signal that arrives while the service is still
    // starting up is not handled by the default action (immediate exit).
    let signals = signal(SignalKind::terminate()).and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    let (mut term, mut int) = match signals {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for shutdown signals");
            return token;
        }
    };
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            // Cancelled by someone else (a fatal error): no need to keep listening.
            () = cancel.cancelled() => return,
        };
        tracing::info!(signal = name, "shutdown requested");
        cancel.cancel();
    });
    token
}

/// Runs `fut` for at most `grace`; `None` when it had to be abandoned.
pub async fn with_grace<F: Future>(fut: F, grace: Duration) -> Option<F::Output> {
    tokio::time::timeout(grace, fut).await.ok()
}
