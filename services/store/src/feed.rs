//! The committed-event feed's messages: each committed group as one message on
//! [`subjects::EVENTS`] (or a few, each under the server's payload limit).
//!
//! Pure encoding, no I/O. A message holds consecutive positions: the headers
//! [`subjects::FIRST_POSITION_HEADER`] and [`subjects::COUNT_HEADER`] say which, the body is
//! the recorded events as a JSON array, built from the stored bytes as they are (no
//! re-encoding). The group is cut where the journal cuts its messages ([`crate::log::runs`]).

use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};
use events::subjects;

use crate::log::CommittedEvent;

/// One feed message: its headers and its body.
pub struct Message {
    /// First position and count.
    pub headers: HeaderMap,
    /// `[<stored event>,…]`.
    pub payload: Bytes,
}

/// The messages of one committed group (`events`, in position order), each body within
/// `max_bytes` unless it holds a single event larger than that.
pub fn messages(events: &[CommittedEvent], max_bytes: usize) -> Vec<Message> {
    // Each event costs its bytes and one separator (a comma, or the closing bracket); the
    // opening bracket is kept out of the budget.
    crate::log::runs(events, 1, max_bytes.saturating_sub(1))
        .into_iter()
        .map(|run| {
            let events = &events[run];
            let len: usize = events.iter().map(|e| e.bytes.len() + 1).sum();
            let mut body = BytesMut::with_capacity(len + 1);
            body.put_u8(b'[');
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    body.put_u8(b',');
                }
                body.put_slice(&e.bytes);
            }
            body.put_u8(b']');
            let mut headers = HeaderMap::new();
            let first = events.first().map_or(0, |e| e.position);
            headers.insert(subjects::FIRST_POSITION_HEADER, first.to_string().as_str());
            headers.insert(subjects::COUNT_HEADER, events.len().to_string().as_str());
            Message {
                headers,
                payload: body.freeze(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use events::{RecordedEvent, StreamName};
    use proptest::prelude::*;

    fn group(sizes: &[usize], first: u64) -> Vec<CommittedEvent> {
        let stream = StreamName::parse("note-00000000-0000-0000-0000-000000000001").unwrap();
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let position = first + i as u64;
                let event = serde_json::json!({
                    "id": uuid::Uuid::new_v4(), "stream": stream, "type": "Noted", "v": 1,
                    "data": {"pad": "x".repeat(*n)}, "meta": {},
                    "position": position, "version": position,
                    "recorded_at": "2026-11-27T02:40:03.123Z",
                });
                CommittedEvent {
                    position,
                    stream: stream.clone(),
                    bytes: Bytes::from(serde_json::to_vec(&event).unwrap()),
                }
            })
            .collect()
    }

    fn header(m: &Message, name: &str) -> u64 {
        m.headers.get(name).unwrap().as_str().parse().unwrap()
    }

    proptest! {
        /// Every event lands once, in order, byte for byte; each body is a JSON array of
        /// recorded events under the limit (or a single event), its headers its first
        /// position and count.
        #[test]
        fn a_group_splits_into_readable_messages(sizes in prop::collection::vec(0usize..400, 1..40), max in 1usize..3000) {
            let events = group(&sizes, 5);
            let mut next = 5u64;
            for m in messages(&events, max) {
                let count = header(&m, subjects::COUNT_HEADER);
                prop_assert_eq!(header(&m, subjects::FIRST_POSITION_HEADER), next);
                prop_assert!(m.payload.len() <= max || count == 1);
                let read: Vec<RecordedEvent> = serde_json::from_slice(&m.payload).unwrap();
                prop_assert_eq!(read.len() as u64, count);
                for (i, r) in read.iter().enumerate() {
                    prop_assert_eq!(r.position, next + i as u64);
                }
                let stored: Vec<u8> = events[(next - 5) as usize..(next - 5 + count) as usize]
                    .iter()
                    .map(|e| e.bytes.to_vec())
                    .collect::<Vec<_>>()
                    .join(&b","[..]);
                prop_assert_eq!(&m.payload[1..m.payload.len() - 1], &stored[..]);
                next += count;
            }
            prop_assert_eq!(next, 5 + sizes.len() as u64);
        }
    }
}
