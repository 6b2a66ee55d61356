//! A real nats-server cluster on loopback for tests: `n` servers (2.15.1, see
//! [`crate::nats_server_bin`]) with routes to each other and JetStream on
//! (`sync_interval: always`, each its own store directory, kept across restarts), no auth,
//! and the ping interval of a cluster node's config (`runtime::nats_cluster::LIVENESS`).
//! [`NatsCluster::start`] returns once JetStream has a meta leader, so streams can be created.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, nats_server_bin, speaks_nats};

/// One server of the cluster.
struct Node {
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// A running cluster; every server is killed on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` routed servers and waits (up to 30 s) for a JetStream meta leader.
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c))| format!("\"nats-route://127.0.0.1:{c}\""))
                .collect();
            let store = dir.path().join(format!("n{}-js", i + 1));
            let config = dir.path().join(format!("n{}.conf", i + 1));
            let text = format!(
                "server_name: n{name}\nlisten: \"127.0.0.1:{port}\"\n{liveness}\
                 jetstream {{ store_dir: \"{store}\", sync_interval: always }}\n\
                 cluster {{ name: vigil-test, listen: \"127.0.0.1:{cluster_port}\", routes: [{routes}] }}\n",
                name = i + 1,
                liveness = runtime::nats_cluster::LIVENESS,
                store = store.display(),
                routes = routes.join(", ")
            );
            std::fs::write(&config, text).unwrap_or_else(|e| panic!("write {config:?}: {e}"));
            nodes.push(Node {
                port: *port,
                config,
                child: None,
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nats_server_bin().display()));
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !speaks_nats(node.port) {
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nats-server n{} exited at start ({status}); port {} taken?",
                    i + 1,
                    node.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server n{} did not listen on {} within 10 s",
                i + 1,
                node.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the JetStream API answers (it needs a meta leader).
    pub async fn wait_for_meta_leader(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(client) = async_nats::connect(self.url_list()).await {
                let js = async_nats::jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster had no JetStream meta leader within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `nats://127.0.0.1:<port>` of server `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Every server's URL (what `async_nats::connect` takes to know the whole cluster).
    pub fn url_list(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Every server's URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// SIGKILL of server `i`; waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again, same port and JetStream directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
