//! The clearances service: travel security clearances (a traveller, an itinerary, a
//! decision), and the arrivals and departures on the way, over NATS only. With the duty
//! station assignments of the personnel register it answers "who is in this area right now"
//! (see [`presence`]).
//!
//! # Commands (`vigil.cmd.clearances.<name>`, a [`Command`] in, a [`Reply`] out)
//! Who may do what is [`events::command::policy`]; a field officer is also held to their
//! country as below.
//! - `request` (`CLEARANCE_REQUEST`) — body: the fields of `ClearanceRequested`
//!   (`traveller`, `itinerary: [{country, area?, from, to}]`, `purpose?`). The traveller
//!   must be in the personnel register (`PersonRegistered`, loaded by `vigil import`),
//!   else `not_found`; for an agency focal point, registered in its agency (another
//!   agency's traveller is `not_found` too). A field officer requests only a journey with a
//!   leg in their country (`forbidden`). The command's id is the clearance's id, its stream's id and its first
//!   event's id: a retry is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with another request is refused `id_reused`.
//! - `approve` (`CLEARANCE_DECIDE`) — `{"clearance": <uuid>, "change": {}}`; `refuse`
//!   (same) — `{"clearance", "change": {"reason"}}`. Only while requested; the decider is
//!   the login. A field officer decides only a journey whose every leg is in their country.
//! - `arrive`, `depart` (`CLEARANCE_MOVEMENT`) — `{"clearance", "change": {"country",
//!   "at"}}`: approved clearances only, a country of the itinerary, no second arrival
//!   without a departure, no departure without an arrival or before it. A field officer
//!   records movements in their own country only; an agency focal point on clearances of
//!   its agency's travellers only (another's is `not_found`).
//! - `get` (`CLEARANCE_READ`) — `{"clearance": <uuid>}`: folded from its stream, so always
//!   current. A field officer sees a clearance with a leg in their country (else
//!   `not_found`).
//! - `list` (`CLEARANCE_READ`) — [`clearance::ListQuery`] (`status`, `country`,
//!   `traveller`; `on` with `country` and optionally `area` for the travellers present
//!   there that day; `limit`, `cursor`): one [`events::page::Page`] from the register, which follows the log (it may lag by the
//!   time an event takes to arrive; `unavailable` until it has read the log as it was at
//!   start). Newest request first.
//!
//! Every transition is decided by the pure `ClearanceState::decide` inside
//! `runtime::commands::execute`: read the stream, decide, append with the version read; if
//! someone wrote in between, decide again on the new state. Two officers approving and
//! refusing at once: one wins, the other is refused `conflict`.
//!
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`clearance::ClearanceState`]), its register and the wiring below ([`Clearances`]).
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees a clearance with no leg in their country.
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod clearance;
pub mod presence;

use events::StreamName;
use events::aggregate::Aggregate;
use events::command::{Actor, Command, Refusal, Role, policy};
use events::domain::DomainEvent;
use events::domain::person::{self, PersonRegistered};
use runtime::host::{Create, Host, Route, Service};
use uuid::Uuid;

use crate::clearance::{ClearanceCommand, ClearanceState, Facts, Register};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "clearances";

// `Change` (body of `approve`, `refuse`, `arrive` and `depart`) and `Get`, by `clearance`.
runtime::bodies!(clearance);

/// Answer of `list`: newest request first (see [`events::page`]); each item the record
/// `events` names.
pub type Listed = events::page::Page<events::domain::clearance::Clearance>;

/// The stream of clearance `id`.
pub use events::domain::clearance::stream_for as stream_of;

/// The clearances service, as the host serves it.
pub struct Clearances;

/// `traveller`'s latest registration in the personnel register: their `person-<v5>`
/// stream, read now, so a person imported a moment ago is found.
async fn traveller(
    host: &Host<Clearances>,
    traveller: &str,
) -> Result<Option<PersonRegistered>, Refusal> {
    host.latest(&person::stream_for(traveller), |e| match e {
        DomainEvent::PersonRegistered(p) if p.person == traveller => Some(p),
        _ => None,
    })
    .await
}

impl Service for Clearances {
    type Aggregate = ClearanceState;
    type Register = Register;
    type Change = Change;
    type Get = Get;
    type View = events::domain::clearance::Clearance;

    const NAME: &'static str = SERVICE;
    const COMMANDS: &'static [(&'static str, Route)] = &[
        (
            "request",
            Route::Create(Create::Checked {
                noun: "clearance",
                verb: "request",
            }),
        ),
        ("approve", Route::Change),
        ("refuse", Route::Change),
        ("arrive", Route::Change),
        ("depart", Route::Change),
        ("get", Route::Get),
        ("list", Route::List),
    ];
    const READ: (&'static [Role], &'static str) = (policy::CLEARANCE_READ, "read clearances");

    /// For a request, the traveller's registration, after the role and the fields (nobody
    /// probes for names). For a transition by an agency focal point (whose scope is the
    /// traveller's agency), the registration of the clearance's traveller: it never changes,
    /// so reading it before the decision cannot race with it. Nothing for the other roles.
    async fn facts(
        host: &Host<Self>,
        id: Uuid,
        actor: &Actor,
        command: &ClearanceCommand,
    ) -> Result<Facts, Refusal> {
        if let ClearanceCommand::Request(requested) = command {
            actor.may(policy::CLEARANCE_REQUEST, "request travel clearances")?;
            requested.validate()?;
            return Ok(Facts {
                traveller: traveller(host, &requested.traveller).await?,
            });
        }
        if actor.role != Role::AgencyFocalPoint {
            return Ok(Facts::default());
        }
        let (history, _) = host.load(&stream_of(id)).await?;
        Ok(Facts {
            traveller: match ClearanceState::fold(&history) {
                Some(c) => traveller(host, &c.traveller).await?,
                None => None,
            },
        })
    }

    fn created(command: &ClearanceCommand) -> Option<DomainEvent> {
        match command {
            ClearanceCommand::Request(r) => Some(r.clone().into()),
            _ => None,
        }
    }

    fn visible(actor: &Actor, c: &ClearanceState) -> bool {
        clearance::visible(actor, c)
    }

    fn not_found(id: Uuid) -> Refusal {
        Refusal::not_found(format!(
            "no clearance {id} that you can see; check the id (field officers see clearances with a leg in their country)"
        ))
    }

    async fn view(
        _host: &Host<Self>,
        _command: &Command<Get>,
        _stream: &StreamName,
        c: ClearanceState,
    ) -> Result<events::domain::clearance::Clearance, Refusal> {
        Ok(c.0)
    }
}
