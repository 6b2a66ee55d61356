//! Incidents on the board: reported, updated, verified, escalated, closed; each open incident's
//! share of its country's entry (counts by severity, unverified, map marker) and of the counters.
//!
//! Promises: the first `IncidentReported` of a stream stands; a closed incident leaves the
//! state and later events of its stream change nothing; its share is taken out exactly as it
//! was put in (see [`count_incident`]).

use std::collections::BTreeMap;

use events::domain::DomainEvent;
use uuid::Uuid;

use super::{At, Code, Counters, CountryState, Effects, Incident, Situation, bump, text, touch};

/// Adds (or, with `add` false, removes) an open incident's share of its country's entry and of
/// the counters.
pub(super) fn count_incident(
    countries: &mut BTreeMap<Code, CountryState>,
    counters: &mut Counters,
    fx: &mut Effects,
    id: Uuid,
    incident: &Incident,
    add: bool,
) {
    let state = touch(countries, incident.country, fx);
    bump(&mut state.open, add, 1);
    let severity = usize::from(incident.severity.get().clamp(1, 5)) - 1;
    bump(&mut state.by_severity[severity], add, 1);
    if !incident.verified {
        bump(&mut state.unverified, add, 1);
    }
    if incident.location.is_some() {
        if add {
            state.markers.insert(incident.reported_at, id);
        } else {
            state.markers.remove(&incident.reported_at);
        }
    }
    bump(&mut counters.open_incidents, add, 1);
    if !incident.verified {
        bump(&mut counters.unverified_incidents, add, 1);
    }
    if let Some(cas) = incident.casualties {
        bump(&mut counters.casualties_killed, add, u64::from(cas.killed));
        bump(
            &mut counters.casualties_injured,
            add,
            u64::from(cas.injured),
        );
    }
}

impl Situation {
    /// Folds one event of this family (`mod.rs` sends no other here).
    pub(super) fn fold_incident(&mut self, event: DomainEvent, at: At, fx: &mut Effects) {
        use DomainEvent as E;
        match event {
            E::IncidentReported(e) => {
                let incident = Incident {
                    country: e.country,
                    reported_at: at.position,
                    category: e.category,
                    severity: e.severity,
                    title: e.title,
                    occurred_at: e.occurred_at,
                    location: e.location,
                    description: e.description,
                    casualties: e.casualties,
                    reporter: e.reporter,
                    verified: false,
                };
                let c = (&mut self.countries, &mut self.counters);
                count_incident(c.0, c.1, fx, at.id, &incident, true);
                let item = text::incident_reported(&incident);
                self.incidents.insert(at.id, incident);
                self.note(at, fx, item);
            }
            E::IncidentUpdated(e) => {
                let Some(incident) = self.incidents.get_mut(&at.id) else {
                    return;
                };
                let c = (&mut self.countries, &mut self.counters);
                count_incident(c.0, c.1, fx, at.id, incident, false);
                if let Some(c) = e.country {
                    incident.country = c;
                }
                if let Some(c) = e.category {
                    incident.category = c;
                }
                if let Some(s) = e.severity {
                    incident.severity = s;
                }
                if let Some(t) = e.title {
                    incident.title = t;
                }
                if let Some(t) = e.occurred_at {
                    incident.occurred_at = t;
                }
                if let Some(l) = e.location {
                    incident.location = Some(l);
                }
                if let Some(d) = e.description {
                    incident.description = Some(d);
                }
                if let Some(c) = e.casualties {
                    incident.casualties = Some(c);
                }
                count_incident(c.0, c.1, fx, at.id, incident, true);
            }
            E::IncidentVerified(_) => {
                let Some(incident) = self.incidents.get_mut(&at.id) else {
                    return;
                };
                if !incident.verified {
                    let c = (&mut self.countries, &mut self.counters);
                    count_incident(c.0, c.1, fx, at.id, incident, false);
                    incident.verified = true;
                    count_incident(c.0, c.1, fx, at.id, incident, true);
                }
                let item = text::incident_verified(incident);
                self.note(at, fx, item);
            }
            E::IncidentEscalated(e) => {
                if let Some(incident) = self.incidents.get(&at.id) {
                    let item = text::incident_escalated(incident, e.to.kind);
                    self.note(at, fx, item);
                }
            }
            E::IncidentClosed(_) => {
                if let Some(incident) = self.incidents.remove(&at.id) {
                    let c = (&mut self.countries, &mut self.counters);
                    count_incident(c.0, c.1, fx, at.id, &incident, false);
                    self.note(at, fx, text::incident_closed(&incident));
                }
            }
            // Not of this family: `fold` in `mod.rs` does not send it here.
            _ => {}
        }
    }
}
