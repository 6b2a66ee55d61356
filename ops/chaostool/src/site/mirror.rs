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

/// Waits (up to 60 s) until the mirror on `bus` covers the centre's position `head`, then
/// reads it whole.
pub(super) async fn read(bus: &Client, head: u64) -> anyhow::Result<Mirrored> {
    let covered = testkit::eventually(Duration::from_secs(60), || async {
        let statuses =
            runtime::store_client::collect_statuses(bus, Duration::from_secs(2), |a| !a.is_empty())
                .await
                .ok()?;
        let covered = statuses.iter().map(|s| s.journal_seq).max()?;
        (covered >= head).then_some(covered)
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

/// Problems of site `name` (scope `scope`): every event of the centre's `log` up to what the
/// mirror covers that the scope rule gives the site must be in its mirror once, in the
/// centre's order, and nothing else.
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
    let mut expected = Vec::new();
    for e in log.iter().take_while(|e| e.position <= mirrored.covered) {
        index.learn(e);
        if index.reach(e).includes(country) {
            expected.push(e.id);
        }
    }
    if expected == mirrored.ids {
        return Vec::new();
    }
    let first_difference = expected
        .iter()
        .zip(&mirrored.ids)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(mirrored.ids.len()));
    vec![format!(
        "{name}: the mirror holds {} events where the centre's log up to position {} gives its scope {} ({scope}); they differ from the {}th on",
        mirrored.ids.len(),
        mirrored.covered,
        expected.len(),
        first_difference + 1
    )]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_mirror_that_misses_or_adds_an_event_is_a_problem() {
        let none = Mirrored {
            ids: vec![],
            covered: 0,
        };
        assert!(judge("a", "AF", &none, &[]).is_empty());
        let extra = Mirrored {
            ids: vec![Uuid::new_v4()],
            covered: 0,
        };
        assert_eq!(judge("a", "AF", &extra, &[]).len(), 1);
        assert_eq!(judge("a", "??", &none, &[]).len(), 1);
    }
}
