//! Surge requests: requested, approved, deployed, officers assigned, and their end (rejected,
//! completed, cancelled).
//!
//! Promises: a surge only moves forward; one that ends leaves the state.

use std::collections::BTreeMap;

use events::domain::DomainEvent;
use uuid::Uuid;

use super::{At, Effects, Situation, Surge, SurgeStatus, bump, text};

impl Situation {
    /// Folds one event of this family (`mod.rs` sends no other here).
    pub(super) fn fold_surge(&mut self, event: DomainEvent, at: At, fx: &mut Effects) {
        use DomainEvent as E;
        match event {
            E::SurgeRequested(e) => {
                let surge = Surge {
                    country: e.country,
                    requested_pos: at.position,
                    duty_station: e.duty_station,
                    status: SurgeStatus::Requested,
                    officers_needed: e.officers_needed,
                    officers_assigned: 0,
                    away_from: BTreeMap::new(),
                };
                self.country_mut(e.country, fx)
                    .surges
                    .insert(at.position, at.id);
                bump(&mut self.counters.active_surges, true, 1);
                self.note(at, fx, text::surge_requested(&surge));
                self.surges.insert(at.id, surge);
            }
            E::SurgeApproved(_) => self.advance_surge(at.id, SurgeStatus::Approved, fx),
            E::SurgeDeployed(_) => {
                self.advance_surge(at.id, SurgeStatus::Deployed, fx);
                if let Some(surge) = self.surges.get(&at.id) {
                    let item = text::surge_deployed(surge);
                    self.note(at, fx, item);
                }
            }
            E::SurgeOfficerAssigned(e) => {
                if let Some(surge) = self.surges.get_mut(&at.id) {
                    bump(&mut surge.officers_assigned, true, 1);
                    *surge.away_from.entry(e.from_duty_station).or_default() += 1;
                    let country = surge.country;
                    self.country_mut(country, fx);
                }
            }
            E::SurgeRejected(_) | E::SurgeCompleted(_) => {
                self.end_surge(at.id, fx);
            }
            E::SurgeCancelled(_) => {
                // Only a surge not yet deployed is cancelled (as the service decides); the
                // timeline says so, without the reason (free text may name someone).
                let cancellable = self
                    .surges
                    .get(&at.id)
                    .is_some_and(|s| s.status < SurgeStatus::Deployed);
                if cancellable && let Some(surge) = self.end_surge(at.id, fx) {
                    self.note(at, fx, text::surge_cancelled(&surge));
                }
            }
            // Not of this family: `fold` in `mod.rs` does not send it here.
            _ => {}
        }
    }

    /// A surge leaves the board (rejected, completed or cancelled); returns it.
    pub(super) fn end_surge(&mut self, id: Uuid, fx: &mut Effects) -> Option<Surge> {
        let surge = self.surges.remove(&id)?;
        self.country_mut(surge.country, fx)
            .surges
            .remove(&surge.requested_pos);
        bump(&mut self.counters.active_surges, false, 1);
        Some(surge)
    }

    /// Moves a surge forward to `status` (never back).
    pub(super) fn advance_surge(&mut self, id: Uuid, status: SurgeStatus, fx: &mut Effects) {
        let surge = self.surges.get_mut(&id).filter(|s| s.status < status);
        if let Some(surge) = surge {
            surge.status = status;
            let country = surge.country;
            self.country_mut(country, fx);
        }
    }
}
