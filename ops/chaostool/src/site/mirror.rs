//! The check that a site's mirror holds its scope of the centre's log, and only that: read
//! on the site's own bus through the store's read API (as the site's gateway reads it), once
//! the mirror says it covers the centre's head, and compared with the centre's log filtered
//! by the scope rule (`site::scope`), event by event, in the centre's order.

use std::time::Duration;

use anyhow::Context;
use async_nats::Client;
use events::RecordedEvent;
use events::validate::Country;
use runtime::StoreClient;
use site::scope::ScopeIndex;
use uuid::Uuid;

/// What a site's mirror held when it was read.
pub(super) struct Mirrored {
    /// The events' ids, in the mirror's (local, gap-free) order.
    pub ids: Vec<Uuid>,
    /// The centre position the mirror said it covers.
    pub covered: u64,
}

/// The centre position the mirror on `bus` says it covers (its store status), if it answers.
pub(super) async fn covered(bus: &Client) -> Option<u64> {
    let statuses =
        runtime::store_client::collect_statuses(bus, Duration::from_secs(2), |a| !a.is_empty())
            .await
            .ok()?;
    statuses.iter().map(|s| s.journal_seq).max()
}

/// Waits (up to 60 s) until the mirror on `bus` covers the centre's position `head`, then
/// reads it whole.
pub(super) async fn read(bus: &Client, head: u64) -> anyhow::Result<Mirrored> {
    let covered = testkit::eventually(Duration::from_secs(60), || async {
        covered(bus).await.filter(|c| *c >= head)
    })
    .await
    .with_context(|| {
        format!("the mirror did not cover the centre's position {head} within 60 s")
    })?;
    let store = StoreClient::new(bus.clone(), Duration::from_secs(10));
    let (mut ids, mut last) = (Vec::new(), 0u64);
    loop {
        let (page, _) = store
            .read(last + 1, 1000)
            .await
            .map_err(|e| anyhow::anyhow!("reading the mirror after {last}: {e}"))?;
        let fresh: Vec<&RecordedEvent> = page.iter().filter(|e| e.position > last).collect();
        let Some(end) = fresh.last().map(|e| e.position) else {
            break;
        };
        for e in fresh {
            anyhow::ensure!(
                e.position == last + 1,
                "the mirror skips from {last} to {}",
                e.position
            );
            ids.push(e.id);
            last = e.position;
        }
        debug_assert_eq!(end, last);
    }
    Ok(Mirrored { ids, covered })
}

/// Problems of site `name` (scope `scope`): the mirror must hold the events of the centre's
/// whole `log` that the scope rule gives the site, once each, in the centre's order, and
/// nothing else: a prefix of them that reaches at least the position it said it covers (the
/// centre may have recorded more after that look, and the mirror may already hold some).
pub(super) fn judge(
    name: &str,
    scope: &str,
    mirrored: &Mirrored,
    log: &[RecordedEvent],
) -> Vec<String> {
    let Ok(country) = Country::parse(scope) else {
        return vec![format!("{name}: scope {scope:?} is not a country")];
    };
    let mut index = ScopeIndex::new();
    let (mut expected, mut covered) = (Vec::new(), 0);
    for e in log {
        index.learn(e);
        if index.reach(e).includes(country) {
            expected.push(e.id);
            if e.position <= mirrored.covered {
                covered = expected.len();
            }
        }
    }
    let held = mirrored.ids.len();
    if held >= covered && expected.get(..held) == Some(&mirrored.ids[..]) {
        return Vec::new();
    }
    let first_difference = expected
        .iter()
        .zip(&mirrored.ids)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(held));
    vec![format!(
        "{name}: the mirror holds {held} events where the centre's log gives its scope ({scope}) {} ({covered} up to position {}, which the mirror said it covers); they differ from the {}th on",
        expected.len(),
        mirrored.covered,
        first_difference + 1
    )]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// An incident reported in `country` at `position`.
    fn report(position: u64, country: &str) -> RecordedEvent {
        let id = Uuid::new_v4();
        serde_json::from_value(json!({
            "id": id, "stream": format!("incident-{id}"), "type": "IncidentReported", "v": 1,
            "data": {"country": country}, "meta": {}, "position": position, "version": 1,
            "recorded_at": "2026-11-27T02:40:03.123Z",
        }))
        .unwrap()
    }

    fn mirrored(log: &[RecordedEvent], positions: &[u64], covered: u64) -> Mirrored {
        let ids = positions.iter().map(|p| log[*p as usize - 1].id).collect();
        Mirrored { ids, covered }
    }

    #[test]
    fn the_mirror_holds_its_scope_in_order_at_least_up_to_what_it_covers() {
        let log = [
            report(1, "AF"),
            report(2, "SO"),
            report(3, "AF"),
            report(4, "AF"),
        ];
        let fine = |positions: &[u64], covered| {
            judge("a", "AF", &mirrored(&log, positions, covered), &log)
        };
        assert!(fine(&[1, 3, 4], 4).is_empty());
        // Recorded after the look that said "covered": held already, or not yet.
        assert!(fine(&[1, 3, 4], 2).is_empty());
        assert!(fine(&[1, 3], 3).is_empty());
        // Missing, out of order, another scope's, twice.
        assert_eq!(fine(&[1, 3], 4).len(), 1);
        assert_eq!(fine(&[1, 4], 4).len(), 1);
        assert_eq!(fine(&[3, 1, 4], 4).len(), 1);
        assert_eq!(fine(&[1, 2, 3, 4], 4).len(), 1);
        assert_eq!(fine(&[1, 3, 3, 4], 4).len(), 1);
        assert_eq!(judge("a", "??", &mirrored(&log, &[], 0), &log).len(), 1);
    }
}
