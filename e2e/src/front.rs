//! A round-robin TCP front, standing in for the Kubernetes Service in front of ingest's
//! replicas: each connection goes to the next backend, and to the one after it when that one
//! refuses (a killed pod leaves the Service's endpoints once it fails its probe; here at once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

/// The front, serving until the test ends.
#[derive(Debug, Clone)]
pub struct Front {
    /// Connections handed to each backend, in the order of `backends`.
    handed: Arc<Vec<AtomicUsize>>,
}

impl Front {
    /// Serves on `listener`, spreading connections over `backends`.
    pub fn start(listener: TcpListener, backends: Vec<SocketAddr>) -> Front {
        let handed: Arc<Vec<AtomicUsize>> = Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let front = Front { handed: handed.clone() };
        let backends = Arc::new(backends);
        tokio::spawn(async move {
            let next = Arc::new(AtomicUsize::new(0));
            while let Ok((client, _)) = listener.accept().await {
                let (backends, handed, next) = (backends.clone(), handed.clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for i in 0..backends.len() {
                        let at = (first + i) % backends.len();
                        if let Ok(server) = TcpStream::connect(backends[at]).await {
                            handed[at].fetch_add(1, Ordering::Relaxed);
                            let (mut client, mut server) = (client, server);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // Every backend refused: the client's connection closes unanswered.
                });
            }
        });
        front
    }

    /// Connections handed to each backend so far.
    pub fn handed(&self) -> Vec<usize> {
        self.handed.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}
