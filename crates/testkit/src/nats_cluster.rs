//! Three `nats-server`s with JetStream, routed to each other on loopback: a cluster on which
//! streams run at three replicas, and whose nodes a test kills, stops and restarts.
//!
//! Each node is a [`NatsServer`] (same process handling, log and watchdog) whose config file
//! names it (`server_name`), gives it its own client, route and monitor ports and JetStream
//! store, and routes it to the other two. What flows out of here to the test is readiness
//! (all three up and a JetStream meta leader elected) and which node leads a stream.

use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::error::{Error, Result};
use crate::nats::{MAX_PAYLOAD, NatsServer, temp_dir};
use crate::{free_port, process};

/// The nodes of a cluster: three, the smallest size that survives the loss of one.
pub const CLUSTER_SIZE: usize = 3;
/// The `cluster { name }` every node carries.
const CLUSTER_NAME: &str = "slipway-test";
/// How long the nodes may take to elect a JetStream meta leader and count each other current.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one JetStream API request of [`NatsCluster::wait_stream_leader`] may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(50);

/// A three-node nats-server cluster on loopback, every node with JetStream, so that a stream
/// with `num_replicas: 3` can be created as soon as [`start`](NatsCluster::start) returns.
/// Every node is killed (and its directory removed) on drop.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    client: reqwest::Client,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each is up, a JetStream meta leader is elected,
    /// and it counts the other two current.
    pub async fn start() -> Result<Self> {
        let program = process::find_binary("nats-server", "nats-server")?;
        process::retry_port_clash(|| Self::try_start(program.clone())).await
    }

    async fn try_start(program: std::path::PathBuf) -> Result<Self> {
        let ports: Vec<(u16, u16, u16)> = (0..CLUSTER_SIZE).map(|_| (free_port(), free_port(), free_port())).collect();
        let mut nodes = Vec::with_capacity(CLUSTER_SIZE);
        for (i, &(port, route_port, monitor_port)) in ports.iter().enumerate() {
            let dir = temp_dir()?;
            let store = dir.path().join("jetstream");
            // Only the others: a route to oneself is made, found a duplicate and dropped, noise
            // in every log.
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &(_, route, _))| format!("nats-route://127.0.0.1:{route}"))
                .collect();
            let conf = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{port}\n\
                 http: 127.0.0.1:{monitor_port}\n\
                 max_payload: {MAX_PAYLOAD}\n\
                 jetstream {{ store_dir: {store:?} }}\n\
                 cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n",
                name = node_name(i),
                routes = routes.join(", "),
            );
            nodes.push(NatsServer::prepare(program.clone(), dir, port, monitor_port, &conf, Vec::new())?);
        }
        // A lone node answers `js-enabled-only` before it has met its peers (it keeps dialling
        // their routes), so starting them one after the other does not deadlock.
        for node in &mut nodes {
            node.wait_started().await?;
        }
        let cluster = NatsCluster { nodes, client: process::probe_client() };
        cluster.wait_meta_leader(None).await?;
        Ok(cluster)
    }

    /// The node `i` (0, 1 or 2): its URL, ports, log, pid.
    ///
    /// # Panics
    /// If `i` is not below [`CLUSTER_SIZE`].
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// The `server_name` of node `i`, as JetStream reports leaders and replicas.
    pub fn node_name(&self, i: usize) -> String {
        node_name(i)
    }

    /// The index of the node named `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| node_name(i) == name)
    }

    /// Every node's client URL, node 0 first.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// All client URLs comma separated, as `nats.url` takes them.
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// SIGKILL node `i` and reap it: a crash, nothing flushed.
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill().await
    }

    /// SIGTERM node `i` and wait (SIGKILL after 10 s): nats-server hands its leaderships over
    /// before it exits.
    pub async fn stop(&mut self, i: usize) -> Result<()> {
        self.nodes[i].stop().await
    }

    /// Starts node `i` again on the same ports with the same store (stopping it first if it
    /// runs) and waits until it has rejoined: it knows the meta leader, and the leader counts
    /// it current. Its stream replicas catch up in the background; see
    /// [`stream_replica_current`](Self::stream_replica_current).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].restart().await?;
        self.wait_meta_leader(Some(i)).await
    }

    /// Whether node `i`'s process is alive.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Which node leads `stream`, as the JetStream API reports it (`stream.info()`'s
    /// `cluster.leader`); an error while the stream has no leader (an election under way).
    pub async fn stream_leader(&self, js: &jetstream::Context, stream: &str) -> Result<usize> {
        let cluster = stream_cluster(js, stream).await?;
        let leader = cluster.leader.unwrap_or_default();
        self.node_index(&leader).ok_or_else(|| Error::JetStream {
            what: format!("the leader of stream {stream}"),
            message: format!("no leader (reported {leader:?})"),
        })
    }

    /// Polls [`stream_leader`](Self::stream_leader) until `stream` has a leader, for at most
    /// `timeout`; the leader and how long the wait took.
    pub async fn wait_stream_leader(
        &self,
        js: &jetstream::Context,
        stream: &str,
        timeout: Duration,
    ) -> Result<(usize, Duration)> {
        // A request that reaches no leader is not answered at all: it would wait out the
        // context's timeout (10 s by default) and make the election look that slow.
        let mut js = js.clone();
        js.set_timeout(PROBE_TIMEOUT);
        let started = Instant::now();
        loop {
            match self.stream_leader(&js, stream).await {
                Ok(leader) if self.is_running(leader) => return Ok((leader, started.elapsed())),
                _ if started.elapsed() > timeout => {
                    return Err(Error::NotElected { what: format!("leader of stream {stream}"), timeout });
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Whether node `i` holds a replica of `stream` that is current (caught up with the
    /// leader, no lag), or leads it.
    pub async fn stream_replica_current(&self, js: &jetstream::Context, stream: &str, i: usize) -> Result<bool> {
        let cluster = stream_cluster(js, stream).await?;
        let name = node_name(i);
        if cluster.leader.as_deref() == Some(name.as_str()) {
            return Ok(true);
        }
        Ok(cluster.replicas.iter().any(|p| p.name == name && p.current && !p.offline && p.lag.unwrap_or(0) == 0))
    }

    /// Waits until every running node answers the full `/healthz` (it has contact with a meta
    /// leader) and the meta leader, as `/jsz` reports it, counts the other running nodes
    /// current; with `rejoining`, that node must be among them.
    async fn wait_meta_leader(&self, rejoining: Option<usize>) -> Result<()> {
        let started = Instant::now();
        while !self.meta_ready(rejoining).await {
            if started.elapsed() > ELECTION_TIMEOUT {
                let logs: Vec<String> = (0..self.nodes.len())
                    .map(|i| format!("--- {} ---\n{}", node_name(i), self.nodes[i].log_tail(15)))
                    .collect();
                tracing::warn!(logs = %logs.join("\n"), "no JetStream meta leader");
                return Err(Error::NotElected { what: "JetStream meta leader".to_owned(), timeout: ELECTION_TIMEOUT });
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn meta_ready(&self, rejoining: Option<usize>) -> bool {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_running(i)).collect();
        if rejoining.is_some_and(|i| !running.contains(&i)) {
            return false;
        }
        for &i in &running {
            let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor_port());
            if !process::http_ok(&self.client, &url).await {
                return false;
            }
        }
        let Some(&first) = running.first() else { return false };
        let Some(meta) = self.meta_cluster(first).await else { return false };
        let Some(leader) = meta.get("leader").and_then(|l| l.as_str()).and_then(|l| self.node_index(l)) else {
            return false;
        };
        // The leader's own view is the one that counts: it places the replicas of new streams.
        let Some(meta) = self.meta_cluster(leader).await else { return false };
        let current: Vec<&str> = meta
            .get("replicas")
            .and_then(|r| r.as_array())
            .map(|peers| {
                peers
                    .iter()
                    .filter(|p| p.get("current").and_then(|c| c.as_bool()) == Some(true))
                    .filter_map(|p| p.get("name").and_then(|n| n.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        running.iter().filter(|&&i| i != leader).all(|&i| current.contains(&node_name(i).as_str()))
    }

    /// `meta_cluster` of node `i`'s `/jsz`.
    async fn meta_cluster(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/jsz", self.nodes[i].monitor_port());
        let jsz: serde_json::Value = self.client.get(url).send().await.ok()?.json().await.ok()?;
        jsz.get("meta_cluster").cloned()
    }
}

fn node_name(i: usize) -> String {
    format!("n{i}")
}

async fn stream_cluster(js: &jetstream::Context, stream: &str) -> Result<jetstream::stream::ClusterInfo> {
    let failed = |what: &str, e: &dyn std::fmt::Display| Error::JetStream {
        what: format!("{what} of stream {stream}"),
        message: e.to_string(),
    };
    let mut handle = js.get_stream(stream).await.map_err(|e| failed("getting", &e))?;
    let info = handle.info().await.map_err(|e| failed("reading the info", &e))?;
    info.cluster.clone().ok_or_else(|| failed("the cluster info", &"none: not clustered"))
}
