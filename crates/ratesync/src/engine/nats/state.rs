//! The value of one KV entry: the whole [`KeyState`] of a (limiter, key), in a
//! compact little-endian binary encoding.
//!
//! ```text
//! u8   version (1)
//! u8   flags: bit 0 = this write freed a concurrency slot (release)
//! u64  origin: the engine instance that wrote it (release watchers skip their own)
//!      with FREED only: u32 length, then the key's bytes (a hashed entry name
//!      cannot be turned back into the key the release watcher must wake)
//! u8   rate kind: 0 = token bucket, 1 = sliding window, 2 = no rate, 3 = fixed window
//!      0: u64 TAT (ns, server clock)
//!      1: u32 run count, then per run: u64 time (ns), u32 units
//!      3: u64 window start (ns, server clock), u64 units used in it
//! u32  lease count, then per lease: u64 id, u64 expiry (ns)
//! ```
//!
//! A value that does not decode (another version, a truncated write, a stranger's
//! entry) is treated as a fresh key: never a panic, and the next write replaces it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::algorithm::{KeyState, LeaseId, LeaseSet, Policy, RateState, WindowCount, WindowLog};

const VERSION: u8 = 1;
/// Flag: the write that stored this value freed a concurrency slot.
pub(crate) const FREED: u8 = 1;

/// Encodes `state` of `key` as written by engine instance `origin`.
pub(crate) fn encode(state: &KeyState, flags: u8, origin: u64, key: &str) -> Bytes {
    let leases: Vec<(LeaseId, u64)> = state.leases.entries().collect();
    let mut out = BytesMut::with_capacity(16 + 12 * 4 + leases.len() * 16);
    out.put_u8(VERSION);
    out.put_u8(flags);
    out.put_u64_le(origin);
    if flags & FREED != 0 {
        out.put_u32_le(key.len() as u32);
        out.put_slice(key.as_bytes());
    }
    match &state.rate {
        RateState::Tat(tat) => {
            out.put_u8(0);
            out.put_u64_le(*tat);
        }
        RateState::Log(log) => {
            out.put_u8(1);
            let runs: Vec<(u64, u32)> = log.runs().collect();
            out.put_u32_le(runs.len() as u32);
            for (time, units) in runs {
                out.put_u64_le(time);
                out.put_u32_le(units);
            }
        }
        RateState::Unlimited => out.put_u8(2),
        RateState::Window(count) => {
            out.put_u8(3);
            out.put_u64_le(count.start);
            out.put_u64_le(count.used);
        }
    }
    out.put_u32_le(leases.len() as u32);
    for (id, expiry) in leases {
        out.put_u64_le(id.0);
        out.put_u64_le(expiry);
    }
    out.freeze()
}

/// The engine instance that wrote a value.
pub(crate) fn origin(value: &[u8]) -> Option<u64> {
    let mut reader = Reader(value);
    if reader.u8()? != VERSION {
        return None;
    }
    reader.u8()?;
    reader.u64()
}

/// The origin and key of a value written by a release (`None` for any other
/// write), read without decoding the rest: the release watcher looks at every
/// write of a watched limiter.
pub(crate) fn released_key(value: &[u8]) -> Option<(u64, String)> {
    let mut reader = Reader(value);
    if reader.u8()? != VERSION || reader.u8()? & FREED == 0 {
        return None;
    }
    let origin = reader.u64()?;
    let key = reader.bytes()?;
    Some((origin, String::from_utf8(key.to_vec()).ok()?))
}

/// Decodes a value for a limiter with `policy`; a fresh state when it does not decode.
pub(crate) fn decode(value: &[u8], policy: &Policy) -> KeyState {
    decode_exact(value).unwrap_or_else(|| KeyState::fresh(policy))
}

fn decode_exact(value: &[u8]) -> Option<KeyState> {
    let mut reader = Reader(value);
    if reader.u8()? != VERSION {
        return None;
    }
    let flags = reader.u8()?;
    let _origin = reader.u64()?;
    if flags & FREED != 0 {
        reader.bytes()?;
    }
    let rate = match reader.u8()? {
        0 => RateState::Tat(reader.u64()?),
        1 => {
            let count = reader.count(12)?;
            let mut runs = Vec::with_capacity(count);
            for _ in 0..count {
                runs.push((reader.u64()?, reader.u32()?));
            }
            RateState::Log(WindowLog::from_runs(runs))
        }
        2 => RateState::Unlimited,
        3 => RateState::Window(WindowCount {
            start: reader.u64()?,
            used: reader.u64()?,
        }),
        _ => return None,
    };
    let count = reader.count(16)?;
    let mut leases = Vec::with_capacity(count);
    for _ in 0..count {
        leases.push((LeaseId(reader.u64()?), reader.u64()?));
    }
    reader.0.is_empty().then_some(KeyState {
        rate,
        leases: LeaseSet::from_entries(leases),
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A u32 length, then that many bytes.
    fn bytes(&mut self) -> Option<&[u8]> {
        let len = self.count(1)?;
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    /// A count of items of `size` bytes each, refused when the value is too short to
    /// hold them (so a forged count cannot make us allocate).
    fn count(&mut self, size: usize) -> Option<usize> {
        let count = self.u32()? as usize;
        (count.checked_mul(size)? <= self.0.len()).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{FixedWindow, Rule, SlidingWindow, TokenBucket};

    fn policy(rule: Rule) -> Policy {
        Policy {
            rule: Some(rule),
            concurrency: None,
        }
    }

    #[test]
    fn states_round_trip() {
        let tb = policy(Rule::TokenBucket(TokenBucket::new(10.0, 3).unwrap()));
        let sw = policy(Rule::SlidingWindow(SlidingWindow::new(5, 1.0).unwrap()));
        let mut state = KeyState::fresh(&tb);
        state.rate = RateState::Tat(123_456_789);
        state.leases.insert(LeaseId(7), 10, 50);
        state.leases.insert(LeaseId(u64::MAX), 11, 50);
        let value = encode(&state, FREED, 42, "user:7");
        assert_eq!(decode(&value, &tb), state);
        assert_eq!(released_key(&value), Some((42, "user:7".to_owned())));
        assert_eq!(released_key(&encode(&state, 0, 42, "user:7")), None);
        assert_eq!(origin(&value), Some(42));

        let log = WindowLog::from_runs([(5, 2), (9, 1)]);
        let state = KeyState {
            rate: RateState::Log(log),
            leases: LeaseSet::default(),
        };
        assert_eq!(decode(&encode(&state, 0, 1, ""), &sw), state);

        let fw = policy(Rule::FixedWindow(FixedWindow::new(5, 1.0).unwrap()));
        let state = KeyState {
            rate: RateState::Window(WindowCount { start: 7, used: 3 }),
            leases: LeaseSet::default(),
        };
        assert_eq!(decode(&encode(&state, 0, 1, ""), &fw), state);

        let slots = Policy {
            rule: None,
            concurrency: None,
        };
        let state = KeyState::fresh(&slots);
        assert_eq!(decode(&encode(&state, 0, 1, ""), &slots), state);
    }

    #[test]
    fn damaged_values_read_as_a_fresh_key() {
        let tb = policy(Rule::TokenBucket(TokenBucket::new(10.0, 3).unwrap()));
        let fresh = KeyState::fresh(&tb);
        let good = encode(&KeyState::fresh(&tb), 0, 1, "k");
        for bad in [
            &b""[..],
            &b"\x02"[..],
            &good[..good.len() - 1],
            // A run count far beyond the value's length.
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255][..],
        ] {
            assert_eq!(decode(bad, &tb), fresh, "{bad:?}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(decode(&trailing, &tb), fresh);
    }
}
