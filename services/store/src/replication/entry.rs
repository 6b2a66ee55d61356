//! One journal message: a run of consecutive events of one group commit, exactly as the
//! leader stored them, with the position of the first and the hash-chain head after the last.
//!
//! Pure encoding, no I/O. The events travel as their stored bytes (length-prefixed, since an
//! event's `data` keeps the bytes the writer sent and may hold any byte), so a follower
//! writes byte for byte what the leader wrote and their hash chains agree. [`split`] cuts a
//! group into messages under the server's payload limit, always at least one event each.

use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};

use crate::log::CommittedEvent;

/// Header: the position of the message's first event.
pub const FIRST_HEADER: &str = "Vigil-First-Position";
/// Header: the hash-chain head after the message's last event, hex.
pub const CHAIN_HEADER: &str = "Vigil-Chain-Head";

/// A decoded (or to-be-sent) journal message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position of `events[0]`.
    pub first: u64,
    /// Chain hash at the last event.
    pub chain_head: [u8; 32],
    /// The stored event bytes, in position order.
    pub events: Vec<Bytes>,
}

/// Bytes of framing per event (its length, u32 big-endian).
const FRAME: usize = 4;

impl Entry {
    /// The message body: each event as its length (u32 BE) and its bytes.
    pub fn payload(&self) -> Bytes {
        let len: usize = self.events.iter().map(|e| e.len() + FRAME).sum();
        let mut out = BytesMut::with_capacity(len);
        for e in &self.events {
            // An event is at most a few hundred KiB (the store's limits), far below 4 GiB.
            out.put_u32(e.len() as u32);
            out.put_slice(e);
        }
        out.freeze()
    }

    /// The message headers.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(FIRST_HEADER, self.first.to_string().as_str());
        h.insert(CHAIN_HEADER, hex::encode(self.chain_head).as_str());
        h
    }

    /// Reads a journal message back; the error says what is wrong with it.
    pub fn decode(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<Entry, String> {
        let headers = headers.ok_or("the journal message has no headers")?;
        let first = headers
            .get(FIRST_HEADER)
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("the journal message has no valid {FIRST_HEADER}"))?;
        let chain_head = headers
            .get(CHAIN_HEADER)
            .and_then(|v| hex::decode(v.as_str()).ok())
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .ok_or_else(|| format!("the journal message has no valid {CHAIN_HEADER}"))?;
        let mut events = Vec::new();
        let mut at = 0usize;
        while at < payload.len() {
            let len = payload
                .get(at..at + FRAME)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or("the journal message ends inside an event's length")?
                as usize;
            at += FRAME;
            if len == 0 || at + len > payload.len() {
                return Err(format!(
                    "the journal message's event {} claims {len} bytes, more than it holds",
                    events.len() + 1
                ));
            }
            events.push(payload.slice(at..at + len));
            at += len;
        }
        if events.is_empty() {
            return Err("the journal message holds no events".into());
        }
        Ok(Entry {
            first,
            chain_head,
            events,
        })
    }
}

/// Cuts a prepared group (`events` with the chain hash at each, `hashes`) into journal
/// messages whose bodies stay within `max_bytes` ([`crate::log::runs`]); a message always
/// holds at least one event.
pub fn split(events: &[CommittedEvent], hashes: &[[u8; 32]], max_bytes: usize) -> Vec<Entry> {
    let events = &events[..events.len().min(hashes.len())];
    crate::log::runs(events, FRAME, max_bytes)
        .into_iter()
        .map(|run| Entry {
            first: events[run.start].position,
            chain_head: hashes[run.end - 1],
            events: events[run].iter().map(|e| e.bytes.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use events::StreamName;
    use proptest::prelude::*;

    fn group(sizes: &[usize], first: u64) -> (Vec<CommittedEvent>, Vec<[u8; 32]>) {
        let stream = StreamName::parse("note-00000000-0000-0000-0000-000000000001").unwrap();
        let events = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| CommittedEvent {
                position: first + i as u64,
                stream: stream.clone(),
                bytes: Bytes::from(vec![b'a' + (i % 26) as u8; *n]),
            })
            .collect();
        let hashes = (0..sizes.len()).map(|i| [i as u8; 32]).collect();
        (events, hashes)
    }

    #[test]
    fn a_message_round_trips() {
        let (events, hashes) = group(&[3, 10, 1], 7);
        let entries = split(&events, &hashes, 1 << 20);
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!((e.first, e.chain_head), (7, [2; 32]));
        let back = Entry::decode(Some(&e.headers()), &e.payload()).unwrap();
        assert_eq!(&back, e);
    }

    #[test]
    fn damaged_messages_are_refused() {
        let (events, hashes) = group(&[5], 1);
        let e = &split(&events, &hashes, 100)[0];
        let payload = e.payload();
        assert!(Entry::decode(None, &payload).is_err());
        assert!(Entry::decode(Some(&e.headers()), &payload.slice(..6)).is_err());
        assert!(Entry::decode(Some(&e.headers()), &Bytes::new()).is_err());
        let mut h = e.headers();
        h.insert(CHAIN_HEADER, "abc");
        assert!(Entry::decode(Some(&h), &payload).is_err());
    }

    proptest! {
        /// Every event lands once, in order, each message under the limit (or alone), each
        /// message's first position and chain head those of its first and last event.
        #[test]
        fn split_keeps_every_event_in_order(sizes in prop::collection::vec(1usize..300, 1..60), max in 1usize..1200) {
            let (events, hashes) = group(&sizes, 1);
            let entries = split(&events, &hashes, max);
            let mut next = 1u64;
            for e in &entries {
                prop_assert_eq!(e.first, next);
                let size: usize = e.events.iter().map(|b| b.len() + FRAME).sum();
                prop_assert!(size <= max || e.events.len() == 1);
                let last = (e.first as usize - 1) + e.events.len() - 1;
                prop_assert_eq!(e.chain_head, hashes[last]);
                for (i, b) in e.events.iter().enumerate() {
                    prop_assert_eq!(b, &events[e.first as usize - 1 + i].bytes);
                }
                let back = Entry::decode(Some(&e.headers()), &e.payload()).unwrap();
                prop_assert_eq!(&back, e);
                next += e.events.len() as u64;
            }
            prop_assert_eq!(next, sizes.len() as u64 + 1);
        }
    }
}
