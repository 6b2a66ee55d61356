//! The outbox's rules, without I/O: what an item is, which one goes next, what an answer
//! from the centre does to it. `crate::store` keeps the items on disk; `crate::server`
//! forwards them.
//!
//! # Promises
//! - Items are numbered in the order the site accepted them (positions 1, 2, 3, …, never
//!   reused) and forwarded strictly in that order: [`Queue::head`] is always the oldest
//!   pending item, and only the head can be settled ([`Queue::settle`]). A batch
//!   ([`Queue::batch`]) is the head and the items after it, in order; the relay carries them
//!   out in order (one after the other, or a run of reports as one service batch whose
//!   appends are chained) and stops at the first that must be sent again, so an item is
//!   never stored at the centre before every older one has a final answer.
//! - One item per command id: submitting the same command again (same id, same service,
//!   command and payload but for its `correlation_id`) gives back the first item ([`Submitted::Existing`]); the same id
//!   with anything else is refused (`id_reused`), and nothing is stored.
//! - An answer is final (`ok` or a refusal), except `unavailable` and anything unreadable,
//!   which mean "try again with the same id" ([`classify`]); a settled item never changes.

use std::collections::{BTreeMap, HashMap};

use events::command::{Refusal, RefusalCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One command accepted at the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its place in the site's order (1, 2, 3, …).
    pub position: u64,
    /// The command's id (forwarded unchanged: the centre counts it once by this id).
    pub id: Uuid,
    /// The service it is for (`incidents`, `relocation`).
    pub service: String,
    /// The command (`report`, `update`, `mark`).
    pub command: String,
    /// The command as submitted (a `Command` envelope), forwarded as is.
    pub payload: Value,
    /// When the site accepted it (RFC 3339).
    pub accepted_at: String,
    /// Where it stands.
    pub state: ItemState,
}

/// Where an item stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ItemState {
    /// Waiting at the site (not yet answered by the centre).
    Pending,
    /// Carried out at the centre: its answer (`Written`, with `duplicate`).
    Forwarded {
        /// When the answer came (RFC 3339).
        answered_at: String,
        /// The centre's `ok` value.
        outcome: Value,
    },
    /// Refused by the centre (or its relay); nothing was changed there.
    Refused {
        /// When the answer came (RFC 3339).
        answered_at: String,
        /// The refusal.
        refusal: Refusal,
    },
}

impl ItemState {
    /// Whether the centre has not answered yet.
    pub fn is_pending(&self) -> bool {
        matches!(self, ItemState::Pending)
    }
}

/// What one attempt to forward an item came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done at the centre (or already done: a retry of a command it had carried out).
    Done(Value),
    /// Refused for good; nothing changed at the centre.
    Refused(Refusal),
    /// Not answered, or `unavailable`: send it again, with the same id, later.
    Retry(String),
}

impl Outcome {
    /// Whether the attempt settles the item.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Retry(_))
    }
}

/// Reads the centre's answer (`{"ok": …}` or `{"error": {code, message}}`).
pub fn classify(reply: &[u8]) -> Outcome {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Answer {
        Ok(Value),
        Error(Refusal),
    }
    match serde_json::from_slice::<Answer>(reply) {
        Ok(Answer::Ok(v)) => Outcome::Done(v),
        Ok(Answer::Error(r)) if r.code == RefusalCode::Unavailable => Outcome::Retry(r.message),
        Ok(Answer::Error(r)) => Outcome::Refused(r),
        // Not an answer of Vigil's: never a reason to drop the item.
        Err(e) => Outcome::Retry(format!("unreadable answer from the centre: {e}")),
    }
}

/// What [`Queue::submit`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new item (to be stored before the site answers).
    New(Item),
    /// The same command was accepted before, as this item.
    Existing(Item),
}

/// How many items stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Waiting at the site.
    pub pending: u64,
    /// Carried out at the centre.
    pub forwarded: u64,
    /// Refused by the centre.
    pub refused: u64,
}

/// Every item of the outbox, in order, with the index by id.
#[derive(Debug, Default)]
pub struct Queue {
    items: BTreeMap<u64, Item>,
    by_id: HashMap<Uuid, u64>,
    /// The oldest pending position (every older item is settled).
    head: Option<u64>,
    last: u64,
    counts: Counts,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue holding `items` (read back from disk, in any order). Fails on two items
    /// with one position or one id, or on an item with position 0.
    pub fn restore(items: impl IntoIterator<Item = Item>) -> Result<Self, String> {
        let mut q = Self::new();
        for item in items {
            if item.position == 0 {
                return Err("an item has position 0".to_owned());
            }
            if q.by_id.insert(item.id, item.position).is_some() {
                return Err(format!("two items have the command id {}", item.id));
            }
            q.count(&item.state, 1);
            q.last = q.last.max(item.position);
            if let Some(dup) = q.items.insert(item.position, item) {
                return Err(format!("two items have the position {}", dup.position));
            }
        }
        q.head = q
            .items
            .values()
            .find(|i| i.state.is_pending())
            .map(|i| i.position);
        Ok(q)
    }

    fn count(&mut self, state: &ItemState, n: i64) {
        let c = match state {
            ItemState::Pending => &mut self.counts.pending,
            ItemState::Forwarded { .. } => &mut self.counts.forwarded,
            ItemState::Refused { .. } => &mut self.counts.refused,
        };
        *c = c.saturating_add_signed(n);
    }

    /// Takes a command: a new item at the end of the queue, or the item the same command
    /// became before (the same but for its `correlation_id`, see [`same_command`]). `now` is the time to record (RFC 3339).
    pub fn submit(
        &mut self,
        id: Uuid,
        service: &str,
        command: &str,
        payload: Value,
        now: &str,
    ) -> Result<Submitted, Refusal> {
        if let Some(item) = self.by_id.get(&id).and_then(|p| self.items.get(p)) {
            return if item.service == service
                && item.command == command
                && same_command(&item.payload, &payload)
            {
                Ok(Submitted::Existing(item.clone()))
            } else {
                Err(Refusal::new(
                    RefusalCode::IdReused,
                    format!(
                        "the command id {id} was already used at this site for another command; use a new id"
                    ),
                ))
            };
        }
        Ok(Submitted::New(Item {
            position: self.last + 1,
            id,
            service: service.to_owned(),
            command: command.to_owned(),
            payload,
            accepted_at: now.to_owned(),
            state: ItemState::Pending,
        }))
    }

    /// Records a new item from [`Queue::submit`] once it is on disk. Fails if it is not the
    /// next position or its id is taken.
    pub fn push(&mut self, item: Item) -> Result<(), String> {
        if item.position != self.last + 1 || self.by_id.contains_key(&item.id) {
            return Err(format!("item {} is not the next one", item.position));
        }
        self.last = item.position;
        self.by_id.insert(item.id, item.position);
        self.count(&item.state, 1);
        if self.head.is_none() && item.state.is_pending() {
            self.head = Some(item.position);
        }
        self.items.insert(item.position, item);
        Ok(())
    }

    /// The oldest pending item: the one to forward next.
    pub fn head(&self) -> Option<&Item> {
        self.head.and_then(|p| self.items.get(&p))
    }

    /// The head and the pending items after it, in order: at most `items` of them, and no
    /// more than `bytes` of payload (JSON) once there is one. Empty when nothing is pending.
    pub fn batch(&self, items: usize, bytes: usize) -> Vec<&Item> {
        let Some(head) = self.head else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut size = 0;
        // Only the head is ever settled, so every item after it is pending.
        for item in self.items.range(head..).map(|(_, i)| i).take(items) {
            size += serde_json::to_vec(&item.payload).map_or(0, |b| b.len());
            if !out.is_empty() && size > bytes {
                break;
            }
            out.push(item);
        }
        out
    }

    /// The item the head becomes once `outcome` (final) is recorded, to be stored; `None`
    /// when `position` is not the head or `outcome` is a retry.
    pub fn settled(&self, position: u64, outcome: &Outcome, now: &str) -> Option<Item> {
        let head = self.head()?;
        if head.position != position {
            return None;
        }
        let state = match outcome {
            Outcome::Done(v) => ItemState::Forwarded {
                answered_at: now.to_owned(),
                outcome: v.clone(),
            },
            Outcome::Refused(r) => ItemState::Refused {
                answered_at: now.to_owned(),
                refusal: r.clone(),
            },
            Outcome::Retry(_) => return None,
        };
        Some(Item {
            state,
            ..head.clone()
        })
    }

    /// Replaces the head with its settled form from [`Queue::settled`]; the next pending
    /// item becomes the head. False (and nothing changes) for anything else.
    pub fn settle(&mut self, item: Item) -> bool {
        if self.head != Some(item.position) || item.state.is_pending() {
            return false;
        }
        self.count(&ItemState::Pending, -1);
        self.count(&item.state, 1);
        let position = item.position;
        self.items.insert(position, item);
        self.head = self
            .items
            .range(position + 1..)
            .find(|(_, i)| i.state.is_pending())
            .map(|(p, _)| *p);
        true
    }

    /// The item of command `id`.
    pub fn get(&self, id: Uuid) -> Option<&Item> {
        self.by_id.get(&id).and_then(|p| self.items.get(p))
    }

    /// How many items stand where.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The last position given out (0: none yet).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Whether two command envelopes are the same command: equal but for `correlation_id`,
/// which traces one request and is new on every resend (the gateway makes one per HTTP
/// request, so a field page resending a report after a lost answer sends another).
pub fn same_command(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let strip = |m: &serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "correlation_id")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<serde_json::Map<_, _>>()
            };
            strip(a) == strip(b)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn submit_new(q: &mut Queue, id: Uuid, n: u64) -> Item {
        match q
            .submit(id, "incidents", "report", json!({"n": n}), "t")
            .unwrap()
        {
            Submitted::New(item) => {
                q.push(item.clone()).unwrap();
                item
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_read_as_done_refused_or_retry() {
        assert_eq!(
            classify(br#"{"ok":{"duplicate":true}}"#),
            Outcome::Done(json!({"duplicate": true}))
        );
        match classify(br#"{"error":{"code":"forbidden","message":"no"}}"#) {
            Outcome::Refused(r) => assert_eq!(r.code, RefusalCode::Forbidden),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(br#"{"error":{"code":"unavailable","message":"later"}}"#),
            Outcome::Retry(_)
        ));
        assert!(matches!(classify(b"garbage"), Outcome::Retry(_)));
        assert!(matches!(classify(b""), Outcome::Retry(_)));
    }

    #[test]
    fn the_same_command_again_is_the_same_item_and_a_reused_id_is_refused() {
        let mut q = Queue::new();
        let id = Uuid::new_v4();
        let first = submit_new(&mut q, id, 1);
        assert_eq!(
            q.submit(id, "incidents", "report", json!({"n": 1}), "t2"),
            Ok(Submitted::Existing(first))
        );
        let refused = q
            .submit(id, "incidents", "report", json!({"n": 2}), "t2")
            .unwrap_err();
        assert_eq!(refused.code, RefusalCode::IdReused);
        assert_eq!(q.last(), 1);
    }

    #[test]
    fn a_resend_with_another_correlation_id_is_the_same_command() {
        let mut q = Queue::new();
        let id = Uuid::new_v4();
        let sent = |corr: &str, n: u64| json!({"id": id, "correlation_id": corr, "body": {"n": n}});
        match q
            .submit(id, "incidents", "report", sent("a", 1), "t")
            .unwrap()
        {
            Submitted::New(item) => q.push(item).unwrap(),
            other => panic!("{other:?}"),
        }
        let again = q
            .submit(id, "incidents", "report", sent("b", 1), "t2")
            .unwrap();
        assert!(matches!(again, Submitted::Existing(_)), "{again:?}");
        let other = q
            .submit(id, "incidents", "report", sent("b", 2), "t2")
            .unwrap_err();
        assert_eq!(other.code, RefusalCode::IdReused);
    }

    #[test]
    fn only_the_head_settles_and_a_retry_settles_nothing() {
        let mut q = Queue::new();
        let a = submit_new(&mut q, Uuid::new_v4(), 1);
        let b = submit_new(&mut q, Uuid::new_v4(), 2);
        assert_eq!(q.head().unwrap().position, a.position);
        assert!(
            q.settled(b.position, &Outcome::Done(json!({})), "t")
                .is_none()
        );
        assert!(
            q.settled(a.position, &Outcome::Retry("down".into()), "t")
                .is_none()
        );
        let mut wrong = b.clone();
        wrong.state = ItemState::Forwarded {
            answered_at: "t".into(),
            outcome: json!({}),
        };
        assert!(!q.settle(wrong), "b is not the head");
        let done = q
            .settled(a.position, &Outcome::Done(json!({})), "t")
            .unwrap();
        assert!(q.settle(done.clone()));
        assert!(!q.settle(done), "settled once");
        assert_eq!(q.head().unwrap().position, b.position);
        assert_eq!(
            q.counts(),
            Counts {
                pending: 1,
                forwarded: 1,
                refused: 0
            }
        );
    }

    #[test]
    fn a_batch_starts_at_the_head_in_order_within_its_limits() {
        let mut q = Queue::new();
        assert!(q.batch(10, 1 << 20).is_empty());
        for n in 1..=5 {
            submit_new(&mut q, Uuid::new_v4(), n);
        }
        let done = q.settled(1, &Outcome::Done(json!({})), "t").unwrap();
        assert!(q.settle(done));
        let positions = |b: Vec<&Item>| b.iter().map(|i| i.position).collect::<Vec<_>>();
        assert_eq!(positions(q.batch(10, 1 << 20)), [2, 3, 4, 5]);
        assert_eq!(positions(q.batch(2, 1 << 20)), [2, 3]);
        // `{"n":2}` is 7 bytes: two fit in 14, and one goes even when it alone is larger.
        assert_eq!(positions(q.batch(10, 14)), [2, 3]);
        assert_eq!(positions(q.batch(10, 1)), [2]);
    }

    /// What the test does next to the queue.
    #[derive(Debug, Clone)]
    enum Step {
        Submit,
        Resubmit(usize),
        Answer(u8),
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Submit),
            1 => (0usize..64).prop_map(Step::Resubmit),
            4 => (0u8..4).prop_map(Step::Answer),
            1 => Just(Step::Restart),
        ]
    }

    proptest! {
        /// Whatever the mix of submissions, retries, answers and restarts (the queue read
        /// back from its items): items are sent in the order accepted, each settled once,
        /// and every accepted item is either settled or still pending.
        #[test]
        fn forwarding_follows_the_site_order_and_settles_each_item_once(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            let mut q = Queue::new();
            let mut ids: Vec<Uuid> = vec![];
            let mut settled_order: Vec<u64> = vec![];
            let mut sent: Vec<u64> = vec![];
            for s in steps {
                match s {
                    Step::Submit => {
                        let id = Uuid::new_v4();
                        let n = ids.len() as u64;
                        let item = submit_new(&mut q, id, n);
                        prop_assert_eq!(item.position, n + 1);
                        ids.push(id);
                    }
                    Step::Resubmit(i) if !ids.is_empty() => {
                        let i = i % ids.len();
                        let got = q.submit(ids[i], "incidents", "report", json!({"n": i as u64}), "t").unwrap();
                        prop_assert!(matches!(got, Submitted::Existing(ref it) if it.position == i as u64 + 1));
                    }
                    Step::Resubmit(_) => {}
                    Step::Answer(kind) => {
                        let Some(head) = q.head().cloned() else { continue };
                        sent.push(head.position);
                        let outcome = match kind {
                            0 => Outcome::Retry("link down".into()),
                            1 => Outcome::Refused(Refusal::forbidden("out of scope")),
                            _ => Outcome::Done(json!({"position": head.position})),
                        };
                        if let Some(item) = q.settled(head.position, &outcome, "t") {
                            prop_assert!(q.settle(item));
                            settled_order.push(head.position);
                        }
                    }
                    Step::Restart => {
                        let items: Vec<Item> = (1..=q.last()).filter_map(|p| {
                            ids.get(p as usize - 1).and_then(|id| q.get(*id)).cloned()
                        }).collect();
                        let before = q.counts();
                        q = Queue::restore(items.into_iter().rev()).unwrap();
                        prop_assert_eq!(q.counts(), before);
                    }
                }
            }
            // Sent in the site's order (a retry resends the same item, never an older one).
            prop_assert!(sent.windows(2).all(|w| w[0] <= w[1]), "{:?}", sent);
            // Settled exactly once each, in order, with no gap: 1, 2, 3, …
            let expected: Vec<u64> = (1..=settled_order.len() as u64).collect();
            prop_assert_eq!(&settled_order, &expected);
            let c = q.counts();
            prop_assert_eq!(c.pending + c.forwarded + c.refused, ids.len() as u64);
            prop_assert_eq!(c.forwarded + c.refused, settled_order.len() as u64);
            match q.head() {
                Some(h) => prop_assert_eq!(h.position, settled_order.len() as u64 + 1),
                None => prop_assert_eq!(c.pending, 0),
            }
        }
    }
}
