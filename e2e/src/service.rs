//! The four Slipway services as real processes with the quickstart's environment: each keeps
//! its command line, so a fault test can SIGKILL it and start it again exactly as before.

use std::time::Duration;

use slipway_testkit::ServiceProcess;

/// How long a (re)started service may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths of the service binaries; see [`crate::binaries!`].
#[derive(Debug, Clone, Copy)]
pub struct Binaries {
    pub ingest: &'static str,
    pub builder: &'static str,
    pub promoter: &'static str,
    pub notifier: &'static str,
}

/// One service process and what it takes to start it again.
pub struct Service {
    pub name: &'static str,
    /// `http://127.0.0.1:<port>` of its admin server.
    pub admin: String,
    bin: &'static str,
    env: Vec<(String, String)>,
    process: ServiceProcess,
}

impl Service {
    /// Spawns `bin` with `env`; call [`Service::wait_ready`] before relying on it.
    pub fn spawn(name: &'static str, bin: &'static str, env: Vec<(String, String)>, admin_port: u16) -> Self {
        let process = ServiceProcess::spawn(bin, &env).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let admin = format!("http://127.0.0.1:{admin_port}");
        Service { name, admin, bin, env, process }
    }

    /// Waits until `/readyz` answers 200 (NATS and PostgreSQL reachable).
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.admin);
        if let Err(e) = self.process.wait_http_ok(&url, READY_TIMEOUT).await {
            panic!("{} never became ready: {e}", self.name);
        }
    }

    /// SIGKILL: a crash, nothing flushed, no shutdown hooks.
    pub async fn kill(&mut self) {
        self.process.sigkill().unwrap_or_else(|e| panic!("kill -9 {}: {e}", self.name));
        // The exit status of a killed process says nothing; only that it is gone matters.
        let _ = self.process.wait(Duration::from_secs(10)).await;
    }

    /// Starts the service again with the same command line and waits until it is ready.
    pub async fn restart(&mut self) {
        self.process =
            ServiceProcess::spawn(self.bin, &self.env).unwrap_or_else(|e| panic!("respawn {}: {e}", self.name));
        self.wait_ready().await;
    }

    /// SIGTERM, then asserts a clean exit within 30 s.
    pub async fn stop(&mut self) {
        self.process.sigterm().unwrap_or_else(|e| panic!("SIGTERM {}: {e}", self.name));
        let status = self.process.wait(Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{}: {e}", self.name));
        assert!(status.success(), "{} exited with {status}:\n{}", self.name, self.output_tail(40));
    }

    /// The last `lines` lines of the current process's output.
    pub fn output_tail(&self, lines: usize) -> String {
        self.process.output_tail(lines)
    }

    /// Whether the current process is alive.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }
}

/// The four services of one demo.
pub struct Services {
    pub ingest: Service,
    pub builder: Service,
    pub promoter: Service,
    pub notifier: Service,
}

impl Services {
    /// Polls `done` every 200 ms until it holds; panics after `timeout` with what was awaited
    /// and the services' output.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: std::time::Duration, done: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done().await {
            assert!(tokio::time::Instant::now() < deadline, "no {what} after {timeout:?}\n{}", self.tails(40));
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Each service's last `lines` lines of output, for a failure message.
    pub fn tails(&self, lines: usize) -> String {
        [&self.ingest, &self.builder, &self.promoter, &self.notifier]
            .iter()
            .map(|s| format!("--- {} ({}):\n{}\n", s.name, alive(s), s.output_tail(lines)))
            .collect()
    }

    /// SIGTERM to all four; each must exit cleanly.
    pub async fn stop(mut self) {
        for service in [&mut self.ingest, &mut self.builder, &mut self.promoter, &mut self.notifier] {
            service.stop().await;
        }
    }
}

fn alive(service: &Service) -> &'static str {
    if service.is_running() { "running" } else { "exited" }
}
