//! A master, an optional replica, and Sentinels watching them, on free ports.

use std::time::Duration;

use super::process::{require_binaries, wait_until};
use super::redis_server::{cli, RedisServer};
use super::REDIS_BINARIES;

/// The name the Sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// A master (and optionally one replica) watched by one or three Sentinels that
/// declare a silent master down after 1 s and fail over to the replica.
pub struct RedisSentinel {
    /// The data servers: `[0]` starts as the master, `[1]` (if any) as its replica.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

/// How [`RedisSentinel::failover`] makes the master change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// `SENTINEL FAILOVER`: an orderly switch; the old master becomes a replica.
    Command,
    /// SIGKILL the master: the Sentinels notice it is gone and promote the replica.
    KillMaster,
}

impl RedisSentinel {
    /// Starts the master, the replica (once it is in sync), then `sentinels`
    /// Sentinels (1 or 3; quorum 1 or 2), and waits until they know the replica
    /// and each other, so a failover can start at once.
    pub fn start(with_replica: bool, sentinels: usize) -> Self {
        assert!(sentinels == 1 || sentinels == 3, "1 or 3 sentinels");
        // A replica's first sync is diskless and waits 5 s for more replicas to
        // share it, unless told not to.
        let master =
            RedisServer::start_with(["--repl-diskless-sync-delay", "0"].map(String::from).into());
        let mut servers = vec![master];
        if with_replica {
            let master_port = servers[0].port().to_string();
            let replica = RedisServer::start_with(
                ["--replicaof", "127.0.0.1", &master_port]
                    .map(String::from)
                    .into(),
            );
            let synced = wait_until(Duration::from_secs(10), || {
                replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            });
            assert!(synced, "the replica did not sync:\n{}", replica.log());
            servers.push(replica);
        }
        let quorum = if sentinels == 1 { 1 } else { 2 };
        let master_port = servers[0].port();
        let sentinels: Vec<RedisServer> = (0..sentinels)
            .map(|_| {
                RedisServer::launch(Box::new(move |port, dir| {
                    let config = dir.join("sentinel.conf");
                    // Sentinel rewrites its own config file: it must be writable.
                    let text = format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.display()
                    );
                    std::fs::write(&config, text).expect("write sentinel.conf");
                    vec![config.display().to_string(), "--sentinel".into()]
                }))
            })
            .collect();
        let setup = RedisSentinel { servers, sentinels };
        let others = setup.sentinels.len() - 1;
        let ready = wait_until(Duration::from_secs(30), || {
            setup.sentinels.iter().all(|sentinel| {
                let knows_replica = !with_replica
                    || replica_is_promotable(&sentinel.cli(&["SENTINEL", "REPLICAS", MASTER_NAME]));
                let peers = sentinel.cli(&["SENTINEL", "SENTINELS", MASTER_NAME]);
                let knows_peers = peers.matches("runid").count() >= others;
                knows_replica && knows_peers
            })
        });
        assert!(
            ready,
            "the sentinels did not discover the replica and each other in 30 s"
        );
        setup
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster` (the first Sentinel).
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}",
            self.sentinels[0].port()
        )
    }

    /// Every Sentinel as `127.0.0.1:PORT` (the `sentinels` store key).
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect()
    }

    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The master's port, as the first Sentinel that answers reports it.
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .filter(|s| s.is_running())
            .find_map(|s| {
                let reply = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
                reply.lines().nth(1)?.trim().parse().ok()
            })
            .expect("a sentinel names the master")
    }

    /// The data server that is the master now.
    pub fn master(&self) -> &RedisServer {
        let port = self.master_port();
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .expect("the master is one of ours")
    }

    /// Moves the master role to the replica and waits (up to 30 s) until the
    /// Sentinels name it and it acts as master. Returns the new master's port.
    pub fn failover(&self, how: Failover) -> u16 {
        assert!(self.servers.len() > 1, "a failover needs a replica");
        let old = self.master_port();
        match how {
            Failover::Command => {
                let reply = self.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]);
                assert_eq!(reply, "OK", "SENTINEL FAILOVER");
            }
            Failover::KillMaster => self.master().kill(),
        }
        let mut new = old;
        let switched = wait_until(Duration::from_secs(30), || {
            new = self.master_port();
            new != old && cli(new, &["ROLE"]).lines().next() == Some("master")
        });
        assert!(switched, "no failover from port {old} within 30 s");
        new
    }
}

/// Whether the one replica in a `SENTINEL REPLICAS` reply (alternating field and
/// value lines) is one the Sentinel would promote: it has read the replica's own
/// INFO lately (not only heard of it from the master), the replica is reachable
/// and its link to the master is up. Otherwise `SENTINEL FAILOVER` answers
/// `NOGOODSLAVE`.
fn replica_is_promotable(reply: &str) -> bool {
    let lines: Vec<&str> = reply.lines().map(str::trim).collect();
    let field = |name: &str| {
        lines
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1).copied())
    };
    field("flags") == Some("slave")
        && field("master-link-status") == Some("ok")
        && field("info-refresh")
            .and_then(|ms| ms.parse::<u64>().ok())
            .is_some_and(|ms| ms < 5_000)
}
