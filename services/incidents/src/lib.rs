//! The incidents service: flash reports from duty stations and everything that follows
//! (details, verification, escalation, closure), over NATS only.
//!
//! # Commands (`vigil.cmd.incidents.<name>`, a [`Command`] in, a [`Reply`] out)
//! - `report` — body: the report's fields (see `IncidentReported`, without `reporter`: it is
//!   the actor). The command's id is the incident's id, its stream's id and its first event's
//!   id: a retried report is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with other content is refused `id_reused`.
//! - `update`, `verify`, `escalate`, `close` — body `{"incident": <uuid>, "change": {…}}`;
//!   decided against the incident's stream (see `Incident::decide`, [`incident::Incident`]) and appended with the
//!   version read (optimistic concurrency); a retry with the same command id is answered
//!   with the original outcome.
//! - `get` — body `{"incident": <uuid>}`: the incident folded from its stream, so it always
//!   includes the caller's own latest change.
//! - `list` — body: [`incident::ListQuery`] (filters, `limit`, `cursor`), answered as one
//!   [`events::page::Page`]: from the register, which follows the log
//!   (it may lag the log by the time it takes an event to arrive).
//!
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`incident::Incident`]), its register and the wiring below ([`Incidents`]).
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees or changes another country's incident.
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod incident;

use events::StreamName;
use events::command::{Actor, Command, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::station;
use runtime::host::{Create, Host, Route, Service};
use uuid::Uuid;

use time::OffsetDateTime;

use crate::incident::{Facts, Incident, IncidentCommand, Register};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "incidents";

// `Change` (body of `update`, `verify`, `escalate` and `close`) and `Get`, by `incident`.
runtime::bodies!(incident);

/// Answer of `list`: newest report first (see [`events::page`]); each item the record
/// `events` names.
pub type Listed = events::page::Page<events::domain::incident::Incident>;

/// The stream of incident `id`.
pub use events::domain::incident::stream_for as stream_of;

/// The incidents service, as the host serves it.
pub struct Incidents;

impl Service for Incidents {
    type Aggregate = Incident;
    type Register = Register;
    type Change = Change;
    type Get = Get;
    type View = events::domain::incident::Incident;

    const NAME: &'static str = SERVICE;
    // `report` does not read first: the store's id index answers a retry.
    const COMMANDS: &'static [(&'static str, Route)] = &[
        (
            "report",
            Route::Create(Create::Blind {
                noun: "incident",
                verb: "report",
            }),
        ),
        ("update", Route::Change),
        ("verify", Route::Change),
        ("escalate", Route::Change),
        ("close", Route::Change),
        ("get", Route::Get),
        ("list", Route::List),
    ];
    const READ: (&'static [events::command::Role], &'static str) =
        (policy::INCIDENT_READ, "read incidents");
    const LIST_CHECKS_READ: bool = false;

    /// The clock, and the registration of the duty station the command names, read from its
    /// stream (always current, also right after `vigil import`); no station when it names
    /// none, names one that is not registered, or names something that is not an id
    /// (decide refuses it).
    async fn facts(
        host: &Host<Self>,
        _id: Uuid,
        _actor: &Actor,
        command: &IncidentCommand,
    ) -> Result<Facts, Refusal> {
        let named = match command {
            IncidentCommand::Report(r) => r.duty_station.as_deref(),
            IncidentCommand::Update(u) => u.duty_station.as_deref(),
            _ => None,
        };
        let station = match named.filter(|n| events::validate::id("duty_station", n).is_ok()) {
            Some(named) => {
                host.latest(&station::stream_for(named), |e| match e {
                    DomainEvent::DutyStationRegistered(s) if s.station == named => Some(s),
                    _ => None,
                })
                .await?
            }
            None => None,
        };
        Ok(Facts {
            now: OffsetDateTime::now_utc(),
            station,
        })
    }

    fn visible(actor: &Actor, incident: &Incident) -> bool {
        incident::visible(actor, incident)
    }

    fn not_found(id: Uuid) -> Refusal {
        Refusal::not_found(format!("no incident {id} that you can see; check the id"))
    }

    async fn view(
        _host: &Host<Self>,
        _command: &Command<Get>,
        _stream: &StreamName,
        incident: Incident,
    ) -> Result<events::domain::incident::Incident, Refusal> {
        Ok(incident.0)
    }
}
