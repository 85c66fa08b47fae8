//! One nats-server or a three-node cluster, for a test or benchmark that runs on either: the
//! URL to give a service, the replicas its stream and buckets take, the servers' processes.

use crate::error::Result;
use crate::nats::NatsServer;
use crate::nats_cluster::{CLUSTER_SIZE, NatsCluster};

/// One server (boxed: it is the larger of the two) or a cluster.
pub enum Nats {
    Single(Box<NatsServer>),
    Cluster(NatsCluster),
}

impl Nats {
    /// Starts one server, or a cluster when `cluster`.
    pub async fn start(cluster: bool) -> Result<Self> {
        Ok(if cluster {
            Nats::Cluster(NatsCluster::start().await?)
        } else {
            Nats::Single(Box::new(NatsServer::start().await?))
        })
    }

    /// The URL for `nats.url`: the cluster's nodes comma separated.
    pub fn url(&self) -> String {
        match self {
            Nats::Single(server) => server.url(),
            Nats::Cluster(cluster) => cluster.url(),
        }
    }

    /// `nats.stream_replicas` for the services: 3 on a cluster.
    pub fn replicas(&self) -> usize {
        match self {
            Nats::Single(_) => 1,
            Nats::Cluster(_) => CLUSTER_SIZE,
        }
    }

    /// The nats-server processes.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Nats::Single(server) => server.pid().into_iter().collect(),
            Nats::Cluster(cluster) => (0..CLUSTER_SIZE).filter_map(|i| cluster.node(i).pid()).collect(),
        }
    }

    /// The one server; panics on a cluster.
    pub fn single(&mut self) -> &mut NatsServer {
        match self {
            Nats::Single(server) => server,
            Nats::Cluster(_) => panic!("this runs on a NATS cluster, not one nats-server"),
        }
    }

    /// The cluster; panics on a single server.
    pub fn cluster(&mut self) -> &mut NatsCluster {
        match self {
            Nats::Cluster(cluster) => cluster,
            Nats::Single(_) => panic!("this runs on one nats-server, not a cluster"),
        }
    }
}

/// A client of every server `url` lists (async-nats parses a string as one address), that
/// keeps trying to connect until one answers.
pub async fn connect(url: &str) -> Result<async_nats::Client> {
    let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| crate::error::Error::JetStream { what: format!("connect to {url}"), message: e.to_string() })
}
