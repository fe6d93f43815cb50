//! One limiter on a Redis store: builds each script call (keys and arguments) and
//! turns the reply into a [`Decision`]. One round trip per call.

use std::sync::Arc;

use redis::Cmd;

use super::keys::{KeyTag, LimiterKeys, Suffix};
use super::scripts::{Now, ScriptDecision};
use super::Shared;
use crate::algorithm::{LeaseId, Rule};
use crate::decision::Decision;
use crate::engine::{EngineFuture, EngineLimiter, LimiterSpec, StoreError};

/// Largest microsecond value the scripts handle exactly (Lua numbers are doubles),
/// with room for the epoch time added to it.
const MAX_SCRIPT_SPAN_US: u64 = 1 << 52;

/// The rule in the scripts' unit, microseconds, rounded up (never looser).
#[derive(Debug, Clone, Copy)]
enum Ticks {
    TokenBucket { interval_us: u64, burst: u32 },
    SlidingWindow { window_us: u64, limit: u32 },
}

/// The keys of one limiter in a Redis store.
pub struct RedisLimiter {
    shared: Arc<Shared>,
    keys: LimiterKeys,
    ticks: Ticks,
    limit: u64,
    /// 0 when the limiter has no concurrency cap.
    max_concurrent: u32,
    lease_ttl_us: u64,
}

impl RedisLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Result<Self, StoreError> {
        let ticks = match spec.policy.rule {
            Rule::TokenBucket(tb) => Ticks::TokenBucket {
                interval_us: tb.interval_nanos().div_ceil(1000),
                burst: tb.burst(),
            },
            Rule::SlidingWindow(sw) => Ticks::SlidingWindow {
                window_us: sw.window_nanos().div_ceil(1000),
                limit: sw.limit(),
            },
        };
        let span = match ticks {
            Ticks::TokenBucket { interval_us, burst } => {
                interval_us.saturating_mul(u64::from(burst))
            }
            Ticks::SlidingWindow { window_us, .. } => window_us,
        };
        if span > MAX_SCRIPT_SPAN_US {
            return Err(StoreError::Backend(format!(
                "limiter `{}`: its rule spans more time than the Redis engine can count \
                 in microseconds; lower `burst` or the window",
                spec.id
            )));
        }
        let (max_concurrent, lease_ttl_us) = match spec.policy.concurrency {
            Some(cc) => (cc.max, cc.lease_ttl.div_ceil(1000).min(MAX_SCRIPT_SPAN_US)),
            None => (0, 0),
        };
        Ok(RedisLimiter {
            keys: LimiterKeys::new(&shared.key_prefix, &spec.id),
            shared,
            ticks,
            limit: u64::from(spec.policy.rule.capacity()),
            max_concurrent,
            lease_ttl_us,
        })
    }

    pub(super) fn keys(&self) -> &LimiterKeys {
        &self.keys
    }

    /// [`EngineLimiter::acquire`], with the scripts' clock pinned to `now_us` when
    /// given. Only tests pin the clock; the engine always decides on the server's.
    #[doc(hidden)]
    pub async fn acquire_at(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        let tag = self.keys.tag(key);
        let lease_args = |cmd: &mut Cmd| {
            cmd.arg(self.max_concurrent);
            match lease {
                Some(id) => cmd.arg(id.0),
                None => cmd.arg(""),
            };
            cmd.arg(self.lease_ttl_us).arg(Now(now_us));
        };
        let scripts = &self.shared.scripts;
        let connection = &self.shared.connection;
        let decision: ScriptDecision = match self.ticks {
            Ticks::TokenBucket { interval_us, burst } => {
                let args = |cmd: &mut Cmd| {
                    cmd.arg(tag.key(Suffix::TokenBucket))
                        .arg(tag.key(Suffix::Leases))
                        .arg(interval_us)
                        .arg(burst)
                        .arg(cost);
                    lease_args(cmd);
                };
                scripts.token_bucket.run(connection, 2, args).await?
            }
            Ticks::SlidingWindow { window_us, limit } => {
                let args = |cmd: &mut Cmd| {
                    cmd.arg(tag.key(Suffix::Log))
                        .arg(tag.key(Suffix::LogSequence))
                        .arg(tag.key(Suffix::Leases))
                        .arg(window_us)
                        .arg(limit)
                        .arg(cost);
                    lease_args(cmd);
                };
                scripts.sliding_window.run(connection, 3, args).await?
            }
        };
        Ok(decision.into_decision(self.limit))
    }

    /// [`EngineLimiter::peek`], with the clock optionally pinned (tests only).
    #[doc(hidden)]
    pub async fn peek_at(
        &self,
        key: &str,
        cost: u32,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        let tag = self.keys.tag(key);
        let (algorithm, rate_key, param, capacity) = match self.ticks {
            Ticks::TokenBucket { interval_us, burst } => {
                ("tb", Suffix::TokenBucket, interval_us, burst)
            }
            Ticks::SlidingWindow { window_us, limit } => ("sw", Suffix::Log, window_us, limit),
        };
        let args = |cmd: &mut Cmd| {
            cmd.arg(tag.key(rate_key))
                .arg(tag.key(Suffix::Leases))
                .arg(algorithm)
                .arg(param)
                .arg(capacity)
                .arg(cost)
                .arg(self.max_concurrent)
                .arg(Now(now_us));
        };
        let decision: ScriptDecision = self
            .shared
            .scripts
            .peek
            .run(&self.shared.connection, 2, args)
            .await?;
        Ok(decision.into_decision(self.limit))
    }

    /// [`EngineLimiter::renew`], with the clock optionally pinned (tests only).
    #[doc(hidden)]
    pub async fn renew_at(
        &self,
        key: &str,
        lease: LeaseId,
        now_us: Option<u64>,
    ) -> Result<bool, StoreError> {
        let tag = self.keys.tag(key);
        let args = |cmd: &mut Cmd| {
            cmd.arg(tag.key(Suffix::Leases))
                .arg(lease.0)
                .arg(self.lease_ttl_us)
                .arg(Now(now_us));
        };
        let renewed: i64 = self
            .shared
            .scripts
            .renew
            .run(&self.shared.connection, 1, args)
            .await?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let tag = self.keys.tag(key);
        let message = self
            .keys
            .release_message(self.shared.releases.origin(), key);
        let args = |cmd: &mut Cmd| {
            cmd.arg(tag.key(Suffix::Leases))
                .arg(lease.0)
                .arg(self.shared.releases.channel())
                .arg(message.as_str());
        };
        let _: i64 = self
            .shared
            .scripts
            .release
            .run(&self.shared.connection, 1, args)
            .await?;
        Ok(())
    }

    async fn reset_key(&self, key: &str) -> Result<(), StoreError> {
        let tag: KeyTag = self.keys.tag(key);
        // Any origin: this process's waiters must hear about freed slots too.
        let message = self.keys.release_message("-", key);
        let args = |cmd: &mut Cmd| {
            // The leases go last: the script looks there for slots to announce.
            for suffix in Suffix::ALL {
                cmd.arg(tag.key(suffix));
            }
            cmd.arg(self.shared.releases.channel())
                .arg(message.as_str());
        };
        let _: i64 = self
            .shared
            .scripts
            .reset
            .run(&self.shared.connection, Suffix::ALL.len(), args)
            .await?;
        Ok(())
    }

    /// Deletes every key of this limiter: SCAN for its pattern on every master,
    /// deleting what each batch finds. Not atomic (nothing across keys is). Each key
    /// that had leases is announced as a single-key reset announces it, so waiters in
    /// every process (this one included) retry at once.
    async fn reset_all(&self) -> Result<(), StoreError> {
        let connection = &self.shared.connection;
        let pattern = self.keys.scan_pattern();
        let nodes = if connection.is_cluster() {
            masters(connection).await?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern.as_str())
                    .arg("COUNT")
                    .arg(1000);
                let (next, found): (u64, Vec<Vec<u8>>) =
                    connection.query_node(node.as_ref(), &scan).await?;
                delete(connection, &found).await?;
                self.announce_freed_slots(&found).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Publishes a reset message (origin `-`) for each deleted lease set in `names`.
    async fn announce_freed_slots(&self, names: &[Vec<u8>]) -> Result<(), StoreError> {
        let channel = self.shared.releases.channel();
        let publishes = names
            .iter()
            .filter_map(|name| self.keys.leases_owner(name))
            .map(|key| {
                let mut publish = redis::cmd("PUBLISH");
                publish
                    .arg(channel)
                    .arg(self.keys.release_message("-", &key));
                async move { self.shared.connection.query::<i64>(&publish).await }
            });
        futures::future::try_join_all(publishes).await.map(drop)
    }
}

/// Deletes `keys`: in one command on a single server; key by key (pipelined on the
/// shared connection) in a cluster, where they may live in different slots.
async fn delete(
    connection: &super::connection::Connection,
    keys: &[Vec<u8>],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    if !connection.is_cluster() {
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(keys);
        return connection.query::<i64>(&unlink).await.map(drop);
    }
    let deletes = keys.iter().map(|key| async move {
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(key);
        connection.query::<i64>(&unlink).await
    });
    futures::future::try_join_all(deletes).await.map(drop)
}

/// The `host:port` of every master of a cluster, from `CLUSTER NODES`.
async fn masters(
    connection: &super::connection::Connection,
) -> Result<Vec<(String, u16)>, StoreError> {
    let nodes: String = connection.query(redis::cmd("CLUSTER").arg("NODES")).await?;
    let masters = parse_masters(&nodes);
    if masters.is_empty() {
        return Err(StoreError::Backend(
            "CLUSTER NODES lists no healthy master".to_owned(),
        ));
    }
    Ok(masters)
}

/// Lines are `<id> <ip:port@cport[,hostname]> <flags> ...`.
fn parse_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let healthy_master = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !healthy_master {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
        .collect()
}

impl EngineLimiter for RedisLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision> {
        Box::pin(self.acquire_at(key, cost, lease, None))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision> {
        Box::pin(self.peek_at(key, cost, None))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()> {
        Box::pin(self.release_lease(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool> {
        Box::pin(self.renew_at(key, lease, None))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            match key {
                Some(key) => self.reset_key(key).await,
                None => self.reset_all().await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";
        assert_eq!(
            parse_masters(nodes),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}
