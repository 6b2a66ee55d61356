//! The structural promises of the board's state, checked from scratch: for tests.

use std::collections::{BTreeMap, BTreeSet};

use events::domain::relocation::PersonStatus;
use events::validate::SecurityLevel;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Code, Counters, CountryState, Situation, TIMELINE_LIMIT, broadcasts};

impl Situation {
    /// Recounts everything kept incrementally from the open cases, and checks the structural
    /// promises (no empty country, markers match located incidents). For tests.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        use events::domain::broadcast::MAX_AGENCIES;
        let mut counters = Counters::default();
        let mut expect: BTreeMap<Code, CountryState> = BTreeMap::new();
        for (country, state) in &self.countries {
            let e = expect.entry(*country).or_default();
            e.areas = state.areas.clone();
            e.level = state.areas.values().map(|a| a.level).max();
            if e.level >= Some(SecurityLevel::High) {
                counters.countries_level_5_plus += 1;
            }
        }
        for (id, i) in &self.incidents {
            let e = expect.entry(Code::of(i.country)).or_default();
            e.open += 1;
            e.by_severity[usize::from(i.severity.get()) - 1] += 1;
            counters.open_incidents += 1;
            if !i.verified {
                e.unverified += 1;
                counters.unverified_incidents += 1;
            }
            if i.location.is_some() {
                e.markers.insert(i.reported_at, *id);
            }
            if let Some(c) = i.casualties {
                counters.casualties_killed += u64::from(c.killed);
                counters.casualties_injured += u64::from(c.injured);
            }
        }
        for (id, h) in &self.hostage {
            let e = expect.entry(Code::of(h.country)).or_default();
            e.hostage_cases.insert(h.opened_pos, *id);
            e.persons_held += h.held.len() as u64;
            counters.hostage_cases += 1;
            counters.persons_held += h.held.len() as u64;
        }
        for (id, s) in &self.surges {
            expect
                .entry(Code::of(s.country))
                .or_default()
                .surges
                .insert(s.requested_pos, *id);
            counters.active_surges += 1;
        }
        for (id, o) in &self.orders {
            expect
                .entry(Code::of(o.country))
                .or_default()
                .orders
                .insert(o.ordered_pos, *id);
            counters.active_orders += 1;
            let accounted = o
                .roll
                .values()
                .filter(|s| {
                    matches!(
                        s,
                        Some(PersonStatus::Safe | PersonStatus::Relocated | PersonStatus::Injured)
                    )
                })
                .count() as u64;
            let missing = o
                .roll
                .values()
                .filter(|s| matches!(s, Some(PersonStatus::Missing)))
                .count() as u64;
            if (accounted, missing) != (o.accounted, o.missing) {
                return Err(format!("order {id}: roll call counts drifted"));
            }
            if o.late
                .iter()
                .chain(&o.left)
                .any(|p| !o.roll.contains_key(p))
            {
                return Err(format!(
                    "order {id}: a late arrival or a leaver is not on the roll call"
                ));
            }
        }
        if self.broadcast_order.len() != self.broadcasts.len()
            || self
                .broadcast_order
                .iter()
                .any(|(pos, id)| self.broadcasts.get(id).is_none_or(|b| b.issued_pos != *pos))
        {
            return Err("the broadcast order does not match the kept broadcasts".into());
        }
        let ended: BTreeSet<(OffsetDateTime, Uuid)> = self
            .broadcasts
            .iter()
            .filter_map(|(id, b)| Some((b.ended_at?, *id)))
            .collect();
        if ended != self.ended {
            return Err("the index of ended broadcasts drifted".into());
        }
        for (id, b) in &self.broadcasts {
            if b.ended() != b.ended_at.is_some() {
                return Err(format!(
                    "broadcast {id}: ended {} but ended_at {:?}",
                    b.ended(),
                    b.ended_at
                ));
            }
            let count = |flag: usize| b.agencies.values().filter(|r| r.shown()[flag]).count();
            let kept = [b.sent, b.delivered, b.acked, b.failed, b.resent];
            if (0..5).any(|flag| kept[flag] != count(flag) as u64) {
                return Err(format!("broadcast {id}: agency counts drifted: {kept:?}"));
            }
            if b.agencies.len() > MAX_AGENCIES {
                return Err(format!("broadcast {id} outgrew {MAX_AGENCIES} agencies"));
            }
            broadcasts::count_broadcast(&mut counters, b.share(), true);
        }
        if counters != self.counters {
            return Err(format!(
                "counters drifted: kept {:?}, recounted {counters:?}",
                self.counters
            ));
        }
        for (country, e) in &expect {
            let Some(s) = self.countries.get(country) else {
                return Err(format!(
                    "{} has something to show but no entry",
                    country.country
                ));
            };
            let same = s.level == e.level
                && s.open == e.open
                && s.unverified == e.unverified
                && s.by_severity == e.by_severity
                && s.markers == e.markers
                && s.hostage_cases == e.hostage_cases
                && s.persons_held == e.persons_held
                && s.surges == e.surges
                && s.orders == e.orders;
            if !same {
                return Err(format!("{}: kept {s:?}, recounted {e:?}", country.country));
            }
        }
        if let Some(c) = self.countries.keys().find(|c| !expect.contains_key(c)) {
            return Err(format!("{} has an entry but nothing to show", c.country));
        }
        if self.countries.values().any(CountryState::is_empty) {
            return Err("an empty country entry was kept".into());
        }
        if self.timeline.len() > TIMELINE_LIMIT {
            return Err("the timeline outgrew its limit".into());
        }
        Ok(())
    }
}
