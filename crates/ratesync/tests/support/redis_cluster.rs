//! A Redis Cluster of masters only, created on free loopback ports.

use std::time::Duration;

use super::process::{free_port, require_binaries, wait_until};
use super::redis_server::{cli, RedisServer};
use super::REDIS_BINARIES;

/// A Cluster of `n` masters (no replicas), every slot assigned, `cluster_state:ok`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, splits the 16384 slots evenly
    /// between them and joins them, then waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// This is what `redis-cli --cluster create ... --cluster-replicas 0
    /// --cluster-yes` does, less its one-second polling: it takes about 5 s where
    /// this takes under 2, and every cluster test process creates its own cluster.
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 1);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::launch(Box::new(|port, dir| {
                    let mut args = super::redis_server::standalone_arguments(port, dir);
                    args.extend(
                        [
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",
                            "--cluster-node-timeout",
                            "5000",
                            // The bus port would otherwise be port + 10000, which
                            // nobody checked was free.
                            "--cluster-port",
                            &free_port().to_string(),
                        ]
                        .map(String::from),
                    );
                    args
                }))
            })
            .collect();
        let slots_per_node = 16384 / masters;
        for (i, node) in nodes.iter().enumerate() {
            let first = i * slots_per_node;
            let last = if i + 1 == masters {
                16383
            } else {
                first + slots_per_node - 1
            };
            let reply = node.cli(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(reply, "OK", "CLUSTER ADDSLOTSRANGE on {}", node.port());
        }
        let bus_port = |node: &RedisServer| -> String {
            // "myself" line of CLUSTER NODES: "<id> 127.0.0.1:PORT@BUS myself,master ..."
            let nodes = node.cli(&["CLUSTER", "NODES"]);
            let myself = nodes
                .lines()
                .find(|line| line.contains("myself"))
                .expect("CLUSTER NODES lists this node");
            let address = myself.split(' ').nth(1).expect("node address");
            let bus = address.split('@').nth(1).expect("bus port");
            bus.split(',').next().unwrap().to_owned()
        };
        for node in &nodes[1..] {
            let reply = nodes[0].cli(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.port().to_string(),
                &bus_port(node),
            ]);
            assert_eq!(reply, "OK", "CLUSTER MEET {}", node.port());
        }
        let cluster = RedisCluster { nodes };
        let ok = wait_until(Duration::from_secs(30), || cluster.is_ok());
        assert!(ok, "the cluster did not reach cluster_state:ok in 30 s");
        cluster
    }

    /// Whether every node reports `cluster_state:ok` and knows every other node.
    pub fn is_ok(&self) -> bool {
        self.nodes.iter().all(|node| {
            node.cli(&["CLUSTER", "INFO"])
                .lines()
                .any(|line| line.trim() == "cluster_state:ok")
                && node.cli(&["CLUSTER", "NODES"]).lines().count() == self.nodes.len()
        })
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The first node's URL: the seed a cluster client discovers the others from.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis-cli -c` (following redirections) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut full = vec!["-c"];
        full.extend_from_slice(args);
        cli(self.nodes[0].port(), &full)
    }
}
