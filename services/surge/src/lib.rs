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
//!   another active surge (`conflict` naming it). `from_duty_station` is the officer's
//!   registered station; a body that carries it is refused.
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
//! surge's stream; a retry with the same command id is answered with the original outcome).
//!
//! # One officer, one surge — and its limit
//! Two assigns of one officer to two *different* surges append to two different streams, so
//! the store's optimistic concurrency cannot stop both. This instance therefore decides
//! `assign` one at a time (a tokio mutex around read-decide-append) and puts the surge as it
//! stands after each successful append into the register at once, without waiting for the
//! feed. The check is exact **within one instance**. Two instances of the service (a NATS
//! queue group spread over machines) could still each pass the check for the same officer
//! at the same moment: run one surge instance, or accept that rare double booking shows up
//! in both surges' officer lists for a person to resolve.
//!
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`surge::Surge`]), its register and the wiring below ([`Surges`]), whose hooks read
//! the reference data, check the register and serialise `assign`.
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees or changes another country's surge (`not_found`).
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod surge;

use std::collections::BTreeMap;

use events::StreamName;
use events::command::{Actor, Command, Refusal, Role, policy};
use events::domain::DomainEvent;
use events::domain::{person, station};
use runtime::host::{self, Create, Host, Route, Service};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::surge::{Facts, Register, Surge, SurgeCommand};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "surge";

/// The stream of surge `id`: `surge-<id>`.
pub use events::domain::surge::stream_for as stream_of;

// `Change` (body of `approve`, `reject`, `assign`, `deploy`, `complete` and `cancel`) and
// `Get`, by `surge`.
runtime::bodies!(surge);

/// A surge as `get` and `list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeView {
    /// The surge, with its officers and the station each came from.
    #[serde(flatten)]
    pub surge: Surge,
    /// How many officers are assigned.
    pub officers_assigned: usize,
    /// Officers away from each duty station because of this surge: the gap it leaves there
    /// (empty once it is completed, rejected or cancelled: they are back).
    pub away_from: BTreeMap<String, usize>,
}

impl SurgeView {
    /// The view of `surge`.
    pub fn of(surge: Surge) -> Self {
        Self {
            officers_assigned: surge.officers.len(),
            away_from: surge::away_from([&surge]),
            surge,
        }
    }
}

/// Answer of `list`: newest request first (see [`events::page`]); each surge with the gap
/// it leaves (`away_from`).
pub type Listed = events::page::Page<SurgeView>;

/// The surge service, as the host serves it.
pub struct Surges;

/// Serves the surge commands until `shutdown`.
pub async fn run(client: async_nats::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    host::run::<Surges>(client, shutdown).await
}

fn already_requested(id: Uuid) -> String {
    format!("surge {id} already exists; request a new surge with a new id")
}

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
        ("request", Route::Create(Create::Blind(already_requested))),
        ("approve", Route::Change),
        ("reject", Route::Change),
        ("assign", Route::Change),
        ("deploy", Route::Change),
        ("complete", Route::Change),
        ("cancel", Route::Change),
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

    /// The register is asked only when it matters (a known officer, an existing surge), so
    /// a missing surge is `not_found` even while the register catches up.
    fn decide(
        host: &Host<Self>,
        id: Uuid,
        state: Option<&Surge>,
        actor: &Actor,
        command: SurgeCommand,
        facts: &Facts,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let officer_on = match &facts.officer {
            Some(p) if state.is_some() => {
                host.register().caught_up()?.active_surge_of(&p.person, id)
            }
            _ => None,
        };
        let facts = Facts {
            officer_on,
            ..facts.clone()
        };
        <Surge as events::aggregate::Aggregate>::decide(id, state, actor, command, &facts)
    }

    /// One `assign` decision at a time in this instance: the "already on another surge"
    /// check and the append that makes it true must not interleave with another assign
    /// (see the crate doc for what this does not cover).
    fn exclusive(command: &SurgeCommand) -> bool {
        matches!(command, SurgeCommand::Assign(_))
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
        Ok(SurgeView::of(surge))
    }
}
