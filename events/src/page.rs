//! One shape for every list: the answer of every service's `list` command and so of every
//! list route of the HTTP API (`GET /api/v1/incidents`, `…/hostage-cases`, `…/surges`,
//! `…/orders`, `…/clearances`, `…/broadcasts`, and the log, `GET /api/v1/events`).
//!
//! ```json
//! {"items": [...], "position": 1234, "next": "c1-4d2" }
//! ```
//! - `items`: one page, in the list's order (newest first, except the log: oldest first).
//! - `position`: the log position the list reflects (the register's position when it
//!   answered; for the log, its head).
//! - `next`: an opaque cursor for the following page (`?cursor=<next>` with the same
//!   filters), or `null` when this page is the last one.
//!
//! # Promises
//! - `limit` is 1 to [`MAX_LIST`], [`DEFAULT_LIST`] when absent; outside that range it is an
//!   `invalid` refusal (422), never silently clamped.
//! - A cursor that is not one this module made is refused (`invalid`, 422) with a message
//!   saying what to send, never read as "from the start".
//! - Paging is keyset paging on a key that never changes and is unique per item (the log
//!   position of the item's first event): following `next` until it is `null` returns each
//!   item that matched on every page exactly once, whatever is added meanwhile (new items
//!   have higher keys and come first, so they are on no later page).
//!
//! Pure: no I/O.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::command::Refusal;

/// Largest page of a list query.
pub const MAX_LIST: usize = 500;
/// Page of a list query when none is asked.
pub const DEFAULT_LIST: usize = 100;

/// The page size of a list query: `asked`, or [`DEFAULT_LIST`]; outside 1 to [`MAX_LIST`]
/// it is an `invalid` refusal. Every service's list reads its limit through this.
pub fn page_limit(asked: Option<usize>) -> Result<usize, Refusal> {
    let limit = asked.unwrap_or(DEFAULT_LIST);
    if (1..=MAX_LIST).contains(&limit) {
        Ok(limit)
    } else {
        Err(Refusal::invalid(format!(
            "limit: must be 1 to {MAX_LIST}, got {limit}"
        )))
    }
}

/// Where the next page starts: after the item whose key is this (in the list's order).
/// Opaque to clients: it is written and read only here (`c1-<hex>`; the `c1` names the
/// format, so a later one can be told apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(u64);

const CURSOR_TAG: &str = "c1-";

impl Cursor {
    /// The cursor after the item of key `key`.
    pub fn after(key: u64) -> Self {
        Cursor(key)
    }

    /// The key of the last item of the previous page.
    pub fn key(self) -> u64 {
        self.0
    }

    /// Reads a cursor; the error says what to send instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.strip_prefix(CURSOR_TAG)
            .filter(|hex| !hex.is_empty() && hex.len() <= 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .map(Cursor)
            .ok_or_else(|| {
                "cursor: not a cursor of this list; send the `next` of the previous page unchanged, or leave cursor out for the first page".to_owned()
            })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{CURSOR_TAG}{:x}", self.0)
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cursor::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One page of a list: the shape of every list answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page<T> {
    /// The page's items, in the list's order.
    pub items: Vec<T>,
    /// The log position the list reflects.
    pub position: u64,
    /// The cursor of the following page; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The same page with each item turned into another.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            position: self.position,
            next: self.next,
        }
    }
}

/// Which page: the `limit` and `cursor` of a list query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// At most this many items (checked by [`page_limit`]).
    pub limit: Option<usize>,
    /// After this item.
    pub cursor: Option<Cursor>,
}

impl PageQuery {
    /// A query of `limit` items after `cursor`.
    pub fn new(limit: Option<usize>, cursor: Option<Cursor>) -> Self {
        Self { limit, cursor }
    }
}

/// The page `q` of `found`, newest first: `found` is every item that matches the list's
/// filters (in any order), `key` each item's unique, unchanging key (its first event's log
/// position), `position` what the list reflects. `show` turns a matched item into what is
/// listed (only for the items on the page).
pub fn newest_first<T, U>(
    mut found: Vec<T>,
    key: impl Fn(&T) -> u64,
    q: PageQuery,
    position: u64,
    show: impl FnMut(T) -> U,
) -> Result<Page<U>, Refusal> {
    let limit = page_limit(q.limit)?;
    found.sort_by_key(|t| std::cmp::Reverse(key(t)));
    let start = q
        .cursor
        .map_or(0, |c| found.partition_point(|t| key(t) >= c.key()));
    Ok(cut(found, start, limit, key, position, show))
}

/// Like [`newest_first`], oldest first (the log).
pub fn oldest_first<T, U>(
    mut found: Vec<T>,
    key: impl Fn(&T) -> u64,
    q: PageQuery,
    position: u64,
    show: impl FnMut(T) -> U,
) -> Result<Page<U>, Refusal> {
    let limit = page_limit(q.limit)?;
    found.sort_by_key(&key);
    let start = q
        .cursor
        .map_or(0, |c| found.partition_point(|t| key(t) <= c.key()));
    Ok(cut(found, start, limit, key, position, show))
}

fn cut<T, U>(
    found: Vec<T>,
    start: usize,
    limit: usize,
    key: impl Fn(&T) -> u64,
    position: u64,
    show: impl FnMut(T) -> U,
) -> Page<U> {
    let more = found.len().saturating_sub(start) > limit;
    let page: Vec<T> = found.into_iter().skip(start).take(limit).collect();
    let next = if more {
        page.last().map(|t| Cursor::after(key(t)))
    } else {
        None
    };
    Page {
        items: page.into_iter().map(show).collect(),
        position,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        for key in [0, 1, 255, 4096, u64::MAX] {
            let c = Cursor::after(key);
            assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
        }
    }

    #[test]
    fn anything_else_is_not_a_cursor() {
        for bad in [
            "",
            "c1-",
            "c1-xyz",
            "12",
            "c2-10",
            "c1--1",
            "c1-10000000000000000",
            "c1- 1",
        ] {
            let e = Cursor::parse(bad).unwrap_err();
            assert!(e.starts_with("cursor:"), "{bad:?}: {e}");
        }
        assert!(serde_json::from_str::<Cursor>("7").is_err());
    }

    #[test]
    fn the_limit_is_bounded() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_LIST);
        assert_eq!(page_limit(Some(MAX_LIST)).unwrap(), MAX_LIST);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(MAX_LIST + 1)).is_err());
    }

    #[test]
    fn the_page_serialises_as_items_position_next() {
        let page = newest_first(
            vec![3u64, 1, 2],
            |k| *k,
            PageQuery::new(Some(2), None),
            9,
            |k| k,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            serde_json::json!({"items": [3, 2], "position": 9, "next": "c1-2"})
        );
        let last = newest_first(
            vec![3u64, 1, 2],
            |k| *k,
            PageQuery::new(Some(2), page.next),
            9,
            |k| k,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&last).unwrap(),
            serde_json::json!({"items": [1], "position": 9, "next": null})
        );
    }

    proptest! {
        /// Following `next` returns every key once, in order, whatever the page size, also
        /// when items newer than the first page arrive between pages.
        #[test]
        fn walking_the_pages_lists_each_item_once(
            keys in proptest::collection::btree_set(1u64..10_000, 0..60),
            newer in proptest::collection::btree_set(10_000u64..20_000, 0..10),
            limit in 1usize..8,
            oldest in any::<bool>(),
        ) {
            let mut all: Vec<u64> = keys.iter().copied().collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let q = PageQuery::new(Some(limit), cursor);
                let page = if oldest {
                    oldest_first(all.clone(), |k| *k, q, 0, |k| k).unwrap()
                } else {
                    newest_first(all.clone(), |k| *k, q, 0, |k| k).unwrap()
                };
                prop_assert!(page.items.len() <= limit);
                seen.extend(page.items);
                pages += 1;
                // Newer items arrive after the first page: newest first, they are on none
                // of the later pages (and oldest first, they would come after every key).
                if pages == 1 && !oldest {
                    all.extend(newer.iter().copied());
                }
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let mut expected: Vec<u64> = keys.iter().copied().collect();
            if !oldest {
                expected.reverse();
            }
            prop_assert_eq!(seen, expected);
        }
    }
}
