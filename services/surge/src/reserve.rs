//! The officer's reservation stream (`surge_officer-<uuid v5 of the officer>`): pure fold and
//! rules that keep "one officer on one active surge" true with the surge service running on
//! several nodes, by the log alone. No I/O; the steps around it are in `crate::assign`.
//!
//! # Why a stream per officer
//! Two `assign`s of one officer to two *different* surges append to two different `surge`
//! streams: no expected version orders them, and each instance's register may not have seen
//! the other's write yet. So an assignment first appends a [`SurgeOfficerReserved`] to the
//! officer's one stream with the version it read: of two racing assignments exactly one
//! append succeeds; the other reads the stream again, finds the winner's reservation and is
//! refused `conflict` naming the winner's surge. Only then does the winner append its
//! `SurgeOfficerAssigned` to the surge's stream, under the command's id.
//!
//! # What a reservation means ([`resolve`])
//! The stream's latest reservation not released since is the *hold*: (surge, command,
//! from_duty_station). The hold is judged against its surge's stream as it stands now:
//! - the surge has the officer and is active: the officer is taken (`conflict` naming it);
//! - the surge has the officer but is closed (completed, cancelled): the hold is stale (its
//!   release was not written yet) and the officer is free;
//! - the surge does not have the officer yet — the assigner is between its two appends, or
//!   stopped there: if the surge can still take the officer (active, not full), **the hold is
//!   finished**, by whoever reads it next: the assignment the reservation announced is
//!   appended to that surge under the reserving command's id, with the surge's expected
//!   version, exactly as the reserving command would write it. Then the officer is taken;
//! - if the surge can no longer take them (closed, or full) the hold is void: the officer is
//!   free.
//!
//! # Why finish rather than expire (the crash between the two appends)
//! A reservation that stays unfinished must neither block the officer for ever nor be
//! overridden while its assigner may still append. Expiring it after a time would be that
//! race: a slow assigner could append its assignment after someone else took the officer.
//! Finishing it is deterministic instead: the assignment has one id (the command's) and one
//! content (from the reservation), so the assigner's own append, its retry and anyone else's
//! finishing store it once (the store answers the others as duplicates), and each append to
//! the surge is checked against the version read. A hold is declared void only when its
//! surge can never take the officer again (closed and full are final: a surge never reopens
//! and officers are never taken off one), so a late append of the stopped assigner is refused
//! by the surge's own rules. A retry of the command with the same id finds its own hold and
//! finishes it ([`Step::Ours`]); a retry whose assignment is already stored is answered with
//! the original outcome.
//!
//! # Release
//! Completing or cancelling a surge appends [`SurgeOfficerReleased`] to each of its officers'
//! streams (when the hold is still that surge's), for the record: the rules above do not need
//! it (a closed surge's hold is stale), so a release cut short by a crash blocks nobody, and a
//! retry of `complete`/`cancel` writes what is missing.

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, RefusalCode};
use events::domain::DomainEvent;
use events::domain::surge::SurgeOfficerAssigned;
use events::domain::surge_officer::{self, SurgeOfficerReleased, SurgeOfficerReserved};
use events::{Meta, RecordedEvent, StreamName};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::surge::Surge;

/// A reservation that stands: the stream's latest [`SurgeOfficerReserved`] not released since.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The surge it reserves the officer for.
    pub surge: Uuid,
    /// The `assign` command that made it: the id of the assignment it announces.
    pub command: Uuid,
    /// The duty station the officer comes from, as the assignment will say.
    pub from_duty_station: String,
    /// The reservation event's own id.
    pub event: Uuid,
    /// Its meta (who asked), which the assignment records too.
    pub meta: Meta,
}

impl Hold {
    /// The assignment this reservation announces.
    pub fn assignment(&self, officer: &str) -> SurgeOfficerAssigned {
        SurgeOfficerAssigned {
            officer: officer.to_owned(),
            from_duty_station: self.from_duty_station.clone(),
        }
    }
}

/// One officer's reservation stream, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The officer's person id.
    pub officer: String,
    /// The reservation that stands, if any.
    pub hold: Option<Hold>,
    /// The stream's version.
    pub version: u64,
}

/// A command on a reservation stream: the surge service's own steps, never sent over NATS
/// (`parse` exists for the given/when/then tests).
#[derive(Debug, Clone, PartialEq)]
pub enum ReservationCommand {
    /// Reserve the officer for a surge.
    Reserve(SurgeOfficerReserved),
    /// End the hold of `surge`, if it is the one that stands.
    Release {
        /// The surge that is done with the officer.
        surge: Uuid,
    },
}

/// The holding surge as its stream stands now (`None`: no hold, or no such surge).
#[derive(Debug, Clone, Default)]
pub struct Holder(pub Option<Surge>);

/// What an `assign` does next, given the officer's hold and its surge.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nobody holds the officer: append the reservation.
    Free,
    /// The hold is this command's own: append (or find) its assignment.
    Ours(Hold),
    /// Another surge that is active has the officer.
    Held(Uuid),
    /// Another command's reservation whose surge can still take the officer: finish it
    /// (append its assignment), then look again.
    Finish(Hold),
}

/// The id of the reservation `command` appends when it read the stream at `version` (one id
/// per try: a retry after a lost answer is a duplicate; a try on a newer version is new).
pub fn reservation_id(command: Uuid, version: u64) -> Uuid {
    Uuid::new_v5(
        &command,
        format!("surge_officer/reserved/{version}").as_bytes(),
    )
}

/// The id of the release of the reservation whose event id is `reservation`.
pub fn release_id(reservation: Uuid) -> Uuid {
    Uuid::new_v5(&reservation, b"surge_officer/released")
}

/// Whether surge `surge` can take `officer` now: active, not full, not already theirs.
pub fn can_take(surge: &Surge, officer: &str) -> Result<(), Refusal> {
    if !surge.status.is_active() {
        return Err(Refusal::conflict(format!(
            "surge {} is {}: it takes no officers now",
            surge.id,
            surge.status.as_str()
        )));
    }
    if surge.officers.len() >= usize::from(surge.officers_needed) {
        return Err(Refusal::conflict(format!(
            "surge {} is full: {} of {} officers assigned; request another surge for more",
            surge.id,
            surge.officers.len(),
            surge.officers_needed
        )));
    }
    if surge.has_officer(officer) {
        return Err(Refusal::conflict(format!(
            "{officer} is already assigned to surge {}",
            surge.id
        )));
    }
    Ok(())
}

/// The refusal for an officer held by active surge `surge`.
pub fn held(officer: &str, surge: Uuid) -> Refusal {
    Refusal::conflict(format!(
        "{officer} is already assigned to surge {surge}, which is still active; complete that surge (or pick another officer) first"
    ))
}

/// What `command` (assigning `officer` to `surge`) does next, given the `hold` on the officer
/// and its surge as it stands now (`holder`; read only when the hold is another command's).
/// See the module doc.
pub fn resolve(
    hold: Option<&Hold>,
    holder: Option<&Surge>,
    officer: &str,
    surge: Uuid,
    command: Uuid,
) -> Result<Step, Refusal> {
    let Some(h) = hold else {
        return Ok(Step::Free);
    };
    if h.command == command {
        if h.surge == surge {
            return Ok(Step::Ours(h.clone()));
        }
        return Err(Refusal::new(
            RefusalCode::IdReused,
            format!(
                "command {command} already reserved {officer} for surge {}; use a new id for a new assignment",
                h.surge
            ),
        ));
    }
    // No such surge (never requested): the hold holds nothing.
    let Some(x) = holder.filter(|x| x.id == h.surge) else {
        return Ok(Step::Free);
    };
    if x.has_officer(officer) {
        return Ok(if x.status.is_active() {
            Step::Held(x.id)
        } else {
            Step::Free
        });
    }
    Ok(match can_take(x, officer) {
        Ok(()) => Step::Finish(h.clone()),
        Err(_) => Step::Free,
    })
}

fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    events::codec::from_value(body).map_err(Refusal::invalid)
}

impl Aggregate for Reservation {
    type Command = ReservationCommand;
    type Facts = Holder;

    fn stream(id: Uuid) -> StreamName {
        surge_officer::stream_with_id(id)
    }

    fn parse(name: &str, _actor: &Actor, body: Value) -> Result<ReservationCommand, Refusal> {
        match name {
            "reserve" => Ok(ReservationCommand::Reserve(read(body)?)),
            "release" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Release {
                    surge: Uuid,
                }
                let r: Release = read(body)?;
                Ok(ReservationCommand::Release { surge: r.surge })
            }
            other => Err(Refusal::invalid(format!(
                "unknown reservation step {:?}",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.version = recorded.version;
    }

    /// A reservation replaces the hold (its writer judged the old one free, with the version
    /// it read); a release ends the hold it names, and only that one.
    fn apply_known(state: &mut Option<Reservation>, event: DomainEvent, recorded: &RecordedEvent) {
        match event {
            DomainEvent::SurgeOfficerReserved(r) => {
                let hold = Hold {
                    surge: r.surge,
                    command: r.command,
                    from_duty_station: r.from_duty_station,
                    event: recorded.id,
                    meta: Meta {
                        appended_by: None,
                        ..recorded.meta.clone()
                    },
                };
                *state = Some(Reservation {
                    officer: r.officer,
                    hold: Some(hold),
                    version: recorded.version,
                });
            }
            DomainEvent::SurgeOfficerReleased(r) => {
                if let Some(s) = state.as_mut() {
                    s.version = recorded.version;
                    if s.hold.as_ref().is_some_and(|h| h.command == r.command) {
                        s.hold = None;
                    }
                }
            }
            _ => {
                if let Some(s) = state.as_mut() {
                    s.version = recorded.version;
                }
            }
        }
    }

    /// `reserve`: the reservation if the officer is free ([`resolve`]); nothing if the hold is
    /// already this command's; `conflict` naming the surge that holds them otherwise (a hold
    /// still to be finished holds them too). `release`: the release of the hold of that
    /// surge; nothing if another hold stands.
    fn decide(
        _id: Uuid,
        state: Option<&Reservation>,
        _actor: &Actor,
        command: ReservationCommand,
        facts: &Holder,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let hold = state.and_then(|s| s.hold.as_ref());
        match command {
            ReservationCommand::Reserve(r) => {
                let event = DomainEvent::from(r.clone());
                event.validate()?;
                match resolve(hold, facts.0.as_ref(), &r.officer, r.surge, r.command)? {
                    Step::Free => Ok(vec![event]),
                    Step::Ours(_) => Ok(vec![]),
                    Step::Held(x) => Err(held(&r.officer, x)),
                    Step::Finish(h) => Err(held(&r.officer, h.surge)),
                }
            }
            ReservationCommand::Release { surge } => match (state, hold) {
                (Some(s), Some(h)) if h.surge == surge => Ok(vec![
                    SurgeOfficerReleased {
                        officer: s.officer.clone(),
                        surge,
                        command: h.command,
                    }
                    .into(),
                ]),
                _ => Ok(vec![]),
            },
        }
    }
}

#[cfg(test)]
mod tests;
