//! One limiter on a Redis store: builds each script call (keys and arguments) and
//! reads the answer. One round trip per call; a group is one call too.

use std::sync::Arc;

use redis::cluster_routing::Slot;
use redis::Cmd;

use super::batch;
use super::keys::{KeyTag, LimiterKeys, Suffix};
use super::scripts::answers;
use super::Shared;
use crate::algorithm::{GroupDecision, LeaseId, Receipt};
use crate::decision::Decision;
use crate::engine::encoding::release_message;
use crate::engine::micros::{single_answer, Kind, MicrosPolicy};
use crate::store::{EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError};

/// The keys of one limiter in a Redis store.
pub struct RedisLimiter {
    shared: Arc<Shared>,
    name: Arc<str>,
    encoding: Arc<Encoding>,
}

/// How a member of a script call is written for one limiter (see `member` in
/// `scripts/lib.lua`): its key names and settings. Shared, so that a call waiting
/// for its batch owns what it sends.
pub(crate) struct Encoding {
    keys: LimiterKeys,
    policy: MicrosPolicy,
}

impl Encoding {
    /// Keys per member: its rate state, and its leases when the limiter caps
    /// concurrency (`compose` in `scripts/lib.lua`): every key sent costs the server
    /// a string to parse and pass to the script.
    pub fn keys(&self) -> usize {
        match self.policy.max_concurrent {
            0 => 1,
            _ => 2,
        }
    }

    /// Appends the keys of one member ([`Self::keys`]).
    pub fn member_keys(&self, cmd: &mut Cmd, tag: &KeyTag) {
        let rate = match self.policy.kind {
            Kind::SlidingWindow => Suffix::Log,
            // One state, (start, units), for windows evenly spaced or on months, as
            // the reference keeps one `RateState::Window` for both.
            Kind::FixedWindow | Kind::FixedMonths => Suffix::FixedWindow,
            // The TAT; a limiter without a rate never reads its rate key, so any
            // name of the tag does.
            Kind::TokenBucket | Kind::Slots => Suffix::TokenBucket,
        };
        cmd.arg(tag.key(rate));
        if self.policy.max_concurrent > 0 {
            cmd.arg(tag.key(Suffix::Leases));
        }
    }

    /// Appends this limiter's settings (`profile` in `scripts/lib.lua`): a batch
    /// writes them once for all its members of this limiter.
    pub fn profile_args(&self, cmd: &mut Cmd) {
        let p = &self.policy;
        cmd.arg(p.kind.code())
            .arg(p.param)
            .arg(p.capacity)
            .arg(p.runs)
            .arg(p.align_us)
            .arg(p.max_concurrent)
            .arg(p.lease_ttl_us);
    }

    /// Appends what is a member's own: its cost and its lease id ('' = none).
    pub fn cost_and_lease(cmd: &mut Cmd, cost: u32, lease: Option<LeaseId>) {
        cmd.arg(cost);
        match lease {
            Some(id) => cmd.arg(id.0),
            None => cmd.arg(""),
        };
    }

    /// Appends the arguments of one member written whole (MEMBER_ARGS in
    /// `scripts/lib.lua`): its profile, its cost and its lease.
    pub fn member_args(&self, cmd: &mut Cmd, cost: u32, lease: Option<LeaseId>) {
        self.profile_args(cmd);
        Self::cost_and_lease(cmd, cost, lease);
    }
}

impl RedisLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Result<Self, StoreError> {
        Ok(RedisLimiter {
            encoding: Arc::new(Encoding {
                policy: MicrosPolicy::new(&spec.id, &spec.policy, "Redis")?,
                keys: LimiterKeys::new(&shared.key_prefix, &spec.id),
            }),
            name: spec.id.clone(),
            shared,
        })
    }

    /// Whether this limiter belongs to the engine whose state is `shared`.
    pub(super) fn is_of(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// One member of a script call for `key`.
    fn member(&self, key: &str, cost: u32, lease: Option<LeaseId>) -> batch::Member {
        batch::Member {
            encoding: self.encoding.clone(),
            tag: self.encoding.keys.tag(key),
            cost,
            lease,
        }
    }

    async fn acquire_one(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> Result<(Decision, Receipt), StoreError> {
        let answer = batch::acquire(&self.shared, vec![self.member(key, cost, lease)]).await?;
        answer.single(self.encoding.policy.limit)
    }

    async fn peek_one(&self, key: &str, cost: u32) -> Result<Decision, StoreError> {
        let tag = self.encoding.keys.tag(key);
        let answer: Vec<u8> = self
            .shared
            .scripts
            .peek
            .run(&self.shared.connection, self.encoding.keys(), |cmd| {
                self.encoding.member_keys(cmd, &tag);
                self.encoding.member_args(cmd, cost, None);
            })
            .await?;
        Ok(single_answer(answers(&answer, [1])?)?
            .single(self.encoding.policy.limit)?
            .0)
    }

    async fn refund_one(
        &self,
        key: &str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> Result<(), StoreError> {
        let tag = self.encoding.keys.tag(key);
        let shared = &self.shared;
        let message = release_message(Some(shared.listener.origin()), &self.name, key);
        let _: i64 = shared
            .scripts
            .refund
            .run(&shared.connection, self.encoding.keys(), |cmd| {
                self.encoding.member_keys(cmd, &tag);
                self.encoding.member_args(cmd, cost, lease);
                cmd.arg(receipt.now)
                    .arg(receipt.recorded)
                    .arg(shared.channel.as_str())
                    .arg(message.as_str());
            })
            .await?;
        Ok(())
    }

    async fn renew_lease(&self, key: &str, lease: LeaseId) -> Result<bool, StoreError> {
        let tag = self.encoding.keys.tag(key);
        let renewed: i64 = self
            .shared
            .scripts
            .renew
            .run(&self.shared.connection, 1, |cmd| {
                cmd.arg(tag.key(Suffix::Leases))
                    .arg(lease.0)
                    .arg(self.encoding.policy.lease_ttl_us);
            })
            .await?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let tag = self.encoding.keys.tag(key);
        let shared = &self.shared;
        let message = release_message(Some(shared.listener.origin()), &self.name, key);
        let _: i64 = shared
            .scripts
            .release
            .run(&shared.connection, 1, |cmd| {
                cmd.arg(tag.key(Suffix::Leases))
                    .arg(lease.0)
                    .arg(shared.channel.as_str())
                    .arg(message.as_str());
            })
            .await?;
        Ok(())
    }

    async fn reset_key(&self, key: &str) -> Result<(), StoreError> {
        let tag = self.encoding.keys.tag(key);
        // No origin: this process's waiters must hear about freed slots too.
        let message = release_message(None, &self.name, key);
        let _: i64 = self
            .shared
            .scripts
            .reset
            .run(&self.shared.connection, Suffix::ALL.len(), |cmd| {
                // The leases go last: the script looks there for slots to announce.
                for suffix in Suffix::ALL {
                    cmd.arg(tag.key(suffix));
                }
                cmd.arg(self.shared.channel.as_str()).arg(message.as_str());
            })
            .await?;
        Ok(())
    }

    /// Deletes every key of this limiter: SCAN for its pattern on every master,
    /// deleting what each batch finds. Not atomic (nothing across keys is). Each key
    /// that had leases is announced as a single-key reset announces it, so waiters in
    /// every process (this one included) retry at once.
    async fn reset_all(&self) -> Result<(), StoreError> {
        let connection = &self.shared.connection;
        let pattern = self.encoding.keys.scan_pattern();
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

    /// Publishes a reset message for each deleted lease set in `names`.
    async fn announce_freed_slots(&self, names: &[Vec<u8>]) -> Result<(), StoreError> {
        let publishes = names
            .iter()
            .filter_map(|name| self.encoding.keys.leases_owner(name))
            .map(|key| {
                let mut publish = redis::cmd("PUBLISH");
                publish
                    .arg(self.shared.channel.as_str())
                    .arg(release_message(None, &self.name, &key));
                async move { self.shared.connection.query::<i64>(&publish).await }
            });
        futures::future::try_join_all(publishes).await.map(drop)
    }
}

/// Whether the keys of a group's members all live in one cluster slot, so that one
/// script can decide them.
pub(super) fn one_slot(limiters: &[&RedisLimiter], members: &[GroupMember<'_>]) -> bool {
    let mut slots = limiters
        .iter()
        .zip(members)
        .map(|(limiter, member)| Slot::for_key(limiter.encoding.keys.tag(member.key).hash_tag()));
    let first = slots.next();
    slots.all(|slot| Some(slot) == first)
}

/// Decides a group in one script call (its keys in one slot, or a single server),
/// batched with the calls beside it.
pub(super) async fn acquire_group(
    shared: &Arc<Shared>,
    limiters: Vec<&RedisLimiter>,
    members: &[GroupMember<'_>],
) -> Result<GroupDecision, StoreError> {
    let call = limiters
        .iter()
        .zip(members)
        .map(|(limiter, m)| limiter.member(m.key, m.cost, m.lease))
        .collect();
    let limits: Vec<u64> = limiters.iter().map(|l| l.encoding.policy.limit).collect();
    batch::acquire(shared, call).await?.group(&limits)
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
    ) -> StoreCall<'a, (Decision, Receipt)> {
        StoreCall::pending(self.acquire_one(key, cost, lease))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        StoreCall::pending(self.peek_one(key, cost))
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()> {
        StoreCall::pending(self.refund_one(key, cost, receipt, lease))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()> {
        StoreCall::pending(self.release_lease(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool> {
        StoreCall::pending(self.renew_lease(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()> {
        StoreCall::pending(async move {
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
