//! Hostage cases: opened, persons released or deceased, closed; how many are still held per
//! country.
//!
//! Promises: the first release or death of a person stands; a closed case leaves the state;
//! proof of life and negotiation contacts are not on the board.

use std::collections::HashSet;

use events::domain::DomainEvent;
use events::validate::Country;
use uuid::Uuid;

use super::{At, Effects, HostageCase, Situation, bump, text};

impl Situation {
    /// Folds one event of this family (`mod.rs` sends no other here).
    pub(super) fn fold_hostage(&mut self, event: DomainEvent, at: At, fx: &mut Effects) {
        use DomainEvent as E;
        match event {
            E::HostageCaseOpened(e) => {
                let held: HashSet<String> = e.persons.into_iter().collect();
                let n = held.len() as u64;
                let state = self.country_mut(e.country, fx);
                state.hostage_cases.insert(at.position, at.id);
                bump(&mut state.persons_held, true, n);
                bump(&mut self.counters.hostage_cases, true, 1);
                bump(&mut self.counters.persons_held, true, n);
                self.note(at, fx, text::hostage_opened(e.country, n));
                self.hostage.insert(
                    at.id,
                    HostageCase {
                        country: e.country,
                        opened_pos: at.position,
                        opened_at: at.time,
                        held,
                        released: 0,
                        deceased: 0,
                    },
                );
            }
            E::HostageReleased(e) => {
                if let Some((country, still)) = self.free_hostage(at.id, &e.person, true, fx) {
                    self.note(at, fx, text::hostage_released(country, still));
                }
            }
            E::HostageDeceased(e) => {
                self.free_hostage(at.id, &e.person, false, fx);
            }
            E::HostageCaseClosed(_) => {
                let Some(case) = self.hostage.remove(&at.id) else {
                    return;
                };
                let n = case.held.len() as u64;
                let state = self.country_mut(case.country, fx);
                state.hostage_cases.remove(&case.opened_pos);
                bump(&mut state.persons_held, false, n);
                bump(&mut self.counters.hostage_cases, false, 1);
                bump(&mut self.counters.persons_held, false, n);
                self.note(at, fx, text::hostage_closed(case.country));
            }
            E::ProofOfLifeReceived(_) | E::NegotiationContactLogged(_) => {}
            // Not of this family: `fold` in `mod.rs` does not send it here.
            _ => {}
        }
    }

    /// A person of a hostage case is no longer held: `released`, or else deceased. Returns the
    /// case's country and how many are still held, or `None` if the case or the person is
    /// unknown (or no longer held: the first release or death stands).
    pub(super) fn free_hostage(
        &mut self,
        id: Uuid,
        person: &str,
        released: bool,
        fx: &mut Effects,
    ) -> Option<(Country, u64)> {
        let case = self.hostage.get_mut(&id)?;
        if !case.held.remove(person) {
            return None;
        }
        bump(
            if released {
                &mut case.released
            } else {
                &mut case.deceased
            },
            true,
            1,
        );
        let (country, still) = (case.country, case.held.len() as u64);
        bump(&mut self.country_mut(country, fx).persons_held, false, 1);
        bump(&mut self.counters.persons_held, false, 1);
        Some((country, still))
    }
}
