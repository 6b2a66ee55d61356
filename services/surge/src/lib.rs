//! The surge service: security officers sent from their duty stations to reinforce another
//! one (request, approval or rejection, assignment, deployment, completion), over NATS only.
//!
//! # Commands (`vigil.cmd.surge.<name>`, a [`Command`] in, a [`Reply`] out)
//! Who may send each is the one policy table (`events::command::policy`); `Surge::decide`
//! checks it again with the actor's country.
//! - `request` (`SURGE_REQUEST`; field officers for a station of their own country) — body:
//!   `SurgeRequested`'s fields. The duty station must be registered (reference data) and in
//!   the body's country. The command's id is the surge's id, its stream's id and its first
//!   event's id: a retry is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with other content is refused `id_reused`.
//! - `approve` (`SURGE_DECIDE`) `{"surge", "change": {}}`, `reject` (`SURGE_DECIDE`)
//!   `{"surge", "change": {"reason"}}` — only while requested; `by` is the login.
//! - `assign` (`SURGE_RUN`) `{"surge", "change": {"officer": "<person id>"}}` — the surge
//!   approved (or deployed, to reinforce) and not full; the officer a registered security
//!   officer (unknown person: `not_found`, import personnel with `vigil import`; not a
//!   security officer: `invalid`), not posted at the surge's own station (`invalid`), not on
//!   another active surge (`conflict` naming it; decided by the officer's reservation
//!   stream, below). `from_duty_station` is the officer's registered station; a body that
//!   carries it is refused. A retry is answered with the original outcome; an answer
//!   `duplicate: true` to a first try means the assignment was already finished for it by
//!   another assign of the officer (see [`reserve`]).
//! - `deploy` (`SURGE_RUN`) `{"surge", "change": {"at"}}` — approved, with an officer;
//!   `complete` (`SURGE_RUN`) `{"surge", "change": {"at"}}` — deployed only. Completion (or
//!   rejection) frees the officers.
//! - `cancel` (`SURGE_DECIDE`) `{"surge", "change": {"reason"}}` — only while requested or
//!   approved (a deployed surge is completed instead; a closed one is `conflict`); the reason
//!   is one line; `by` is the login. The assigned officers are free at once for another
//!   surge (a cancelled surge is not active).
//! - `get` (`SURGE_READ`) `{"surge"}` — the surge folded from its stream (always current),
//!   its officers with the station each came from, and `away_from`: officers away from each
//!   station because of it ([`surge::away_from`]).
//! - `list` (`SURGE_READ`) — [`surge::ListQuery`] (`status`, `country`, `limit`, `cursor`):
//!   one [`events::page::Page`] of [`SurgeView`]s, newest first, from the register (it may
//!   lag the log by the time an event takes to arrive; this instance's own writes show at
//!   once). The gap every active surge leaves is on the situation board.
//!
//! Transitions go through `runtime::commands::execute` (optimistic concurrency on the
//! surge's stream; a retry with the same command id is answered with the original outcome);
//! `assign` appends to the officer's reservation stream first (below).
//!
//! # One officer, one surge — on every node
//! Two assigns of one officer to two *different* surges append to two different streams, so
//! the surge streams' optimistic concurrency cannot stop both; and on a three-node centre
//! the two may be taken by two instances (a NATS queue group), each with a register that has
//! not seen the other's write. So the check is not made on any instance's memory but on the
//! log: `assign` first appends a reservation to the officer's own stream
//! (`surge_officer-<uuid v5 of the officer>`) with the version it read — of two racing
//! assigns exactly one succeeds, the other reads again and is refused `conflict` naming the
//! surge that holds the officer — and then the assignment to the surge's stream, under the
//! command's id. `complete` and `cancel` release their officers' reservations. A reservation
//! whose assignment never came (the instance stopped between the two appends) is finished
//! by the command's retry or by the next assignment of that officer, and is void once its
//! surge can never take the officer: [`reserve`] says why that choice, `assign.rs` the steps.
//! No lock: assigns run concurrently on every instance.
//!
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`surge::Surge`]), its register, the officers' reservations ([`reserve`]) and the wiring
//! below ([`Surges`]), whose hooks read the reference data and take `assign`, `complete` and
//! `cancel` (`assign.rs`).
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees or changes another country's surge (`not_found`).
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

mod assign;
pub mod reserve;
pub mod surge;

use std::sync::Arc;

use bytes::Bytes;

use events::StreamName;
use events::command::{Actor, Command, Refusal, Role, policy};
use events::domain::DomainEvent;
use events::domain::{person, station};
use runtime::commands::reply;
use runtime::host::{self, Create, Host, Route, Service};
use uuid::Uuid;

use crate::surge::{Facts, Register, Surge, SurgeCommand};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "surge";

/// The stream of surge `id`: `surge-<id>`.
pub use events::domain::surge::stream_for as stream_of;

// `Change` (body of `approve`, `reject`, `assign`, `deploy`, `complete` and `cancel`) and
// `Get`, by `surge`.
runtime::bodies!(surge);

/// A surge as `get` and `list` show it (in `events`, as the answers name it).
pub use events::domain::surge::SurgeView;

/// The view of `surge`: the surge, how many officers it has, and the gap it leaves.
pub fn view_of(surge: Surge) -> SurgeView {
    SurgeView {
        officers_assigned: surge.officers.len(),
        away_from: surge::away_from([&surge]),
        surge: surge.0,
    }
}

/// Answer of `list`: newest request first (see [`events::page`]); each surge with the gap
/// it leaves (`away_from`).
pub type Listed = events::page::Page<SurgeView>;

/// The surge service, as the host serves it.
pub struct Surges;

impl Service for Surges {
    type Aggregate = Surge;
    type Register = Register;
    type Change = Change;
    type Get = Get;
    type View = SurgeView;

    const NAME: &'static str = SERVICE;
    // `request` does not read first (as for incident reports): the store's id index answers
    // a retry, and `no_stream` refuses a second request on the same stream.
    const COMMANDS: &'static [(&'static str, Route)] = &[
        (
            "request",
            Route::Create(Create::Blind {
                noun: "surge",
                verb: "request",
            }),
        ),
        ("approve", Route::Change),
        ("reject", Route::Change),
        // With the officer's reservation stream (`assign`), and its release (see `assign.rs`).
        ("assign", Route::Custom),
        ("deploy", Route::Change),
        ("complete", Route::Custom),
        ("cancel", Route::Custom),
        ("get", Route::Get),
        ("list", Route::List),
    ];
    const READ: (&'static [Role], &'static str) = (policy::SURGE_READ, "read surges");
    // The register learns each write at once: the next `assign` must see who is where.
    const FOLDS_WRITES: bool = true;

    /// For `request`, the duty station as registered; for `assign`, the officer as
    /// registered (each read from its stream: always current, also right after `vigil
    /// import`). The role comes first: nobody probes the reference data.
    async fn facts(
        host: &Host<Self>,
        _id: Uuid,
        actor: &Actor,
        command: &SurgeCommand,
    ) -> Result<Facts, Refusal> {
        match command {
            SurgeCommand::Request(r) => {
                actor.may(policy::SURGE_REQUEST, "request surges")?;
                events::validate::id("duty_station", &r.duty_station)?;
                let id = r.duty_station.as_str();
                let station = host
                    .latest(&station::stream_for(id), |e| match e {
                        DomainEvent::DutyStationRegistered(s) if s.station == id => Some(s),
                        _ => None,
                    })
                    .await?;
                Ok(Facts {
                    station,
                    ..Facts::default()
                })
            }
            SurgeCommand::Assign(a) => {
                actor.may(policy::SURGE_RUN, "assign officers to surges")?;
                let id = a.officer.as_str();
                let officer = host
                    .latest(&person::stream_for(id), |e| match e {
                        DomainEvent::PersonRegistered(p) if p.person == id => Some(p),
                        _ => None,
                    })
                    .await?;
                Ok(Facts {
                    officer,
                    ..Facts::default()
                })
            }
            _ => Ok(Facts::default()),
        }
    }

    /// The surge as it stands after a write goes into the register ahead of the feed (whose
    /// own copy replaces it when it arrives).
    fn wrote(host: &Host<Self>, surge: Surge) {
        if let Ok(mut register) = host.register().write() {
            register.wrote(surge);
        }
    }

    fn visible(actor: &Actor, s: &Surge) -> bool {
        surge::visible(actor, s)
    }

    fn not_found(id: Uuid) -> Refusal {
        Refusal::not_found(format!("no surge {id} that you can see; check the id"))
    }

    async fn view(
        _host: &Host<Self>,
        _command: &Command<Get>,
        _stream: &StreamName,
        surge: Surge,
    ) -> Result<SurgeView, Refusal> {
        Ok(view_of(surge))
    }

    async fn custom(host: &Arc<Host<Self>>, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "assign" => reply(assign::assign(host, &payload).await),
            "complete" | "cancel" => reply(assign::close(host, name, &payload).await),
            other => reply::<()>(Err(host::unknown_command(SERVICE, Self::COMMANDS, other))),
        }
    }
}
