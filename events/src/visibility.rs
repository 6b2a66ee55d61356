//! Who may see what of a recorded event: the one decision every route that hands out raw
//! events (the log, a stream browser, a causal chain, an export) consults.
//!
//! # What it owns
//! - [`class_of`]: the sensitivity [`Class`] of each event type, from one table
//!   ([`CLASSES`]); a type not in it is [`Class::Unclassified`].
//! - [`sight`]: per caller (role, country scope, agency) and event, whether the caller gets
//!   the event [`Sight::Whole`], whole only after the read is audited
//!   ([`Sight::WholeAudited`]), [`Sight::Redacted`] (see [`redact`]) or [`Sight::Nothing`].
//! - [`redact`]: the redacted form of an event: the envelope (id, stream, type, position,
//!   time, meta) with only the fields of its data that the redacted view allows.
//!
//! # Promises
//! - Pure: no I/O, no clock; the same caller and event always get the same answer.
//! - A hostage event ([`Class::Restricted`]) leaves whole only to a role in
//!   [`policy::HOSTAGE_DETAILS`], and then as [`Sight::WholeAudited`]: the route records the
//!   read (as the hostage service's `get` does) before it answers, or shows it redacted.
//!   Everyone else who may read the log gets counts and ids: never persons, captors,
//!   location, notes, summaries or outcomes.
//! - An unknown event type is never shown whole to anyone: its data could be anything, so
//!   its envelope is shown with its data withheld (an unknown type is kept and shown, never
//!   dropped).
//! - Roles that may not read the log (field officers, focal points, wall screens) get
//!   [`Sight::Nothing`] for raw events, except a focal point's own agency's broadcast
//!   events: their scoped views are the boards and the resources' own routes.

use serde_json::{Map, Value};

use crate::command::{Actor, Role, policy};
use crate::envelope::RecordedEvent;

/// How sensitive an event type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The centre's operations (incidents, levels, registers, surges, orders, clearances,
    /// broadcasts as a whole, audit records): whole to the roles that read the log.
    Internal,
    /// About one agency's copy of a broadcast (its delivery, failure, acknowledgement):
    /// whole to the log's readers and to that agency's focal point.
    AgencyScoped,
    /// Hostage-case details (persons, captors, location, proofs, negotiations, outcomes):
    /// whole only to [`policy::HOSTAGE_DETAILS`], audited; redacted for other log readers.
    Restricted,
    /// A type this build does not know: data withheld from everyone.
    Unclassified,
}

/// What of an event a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sight {
    /// The event as recorded.
    Whole,
    /// The event as recorded, once the read is on disk in the audit log.
    WholeAudited,
    /// [`redact`]ed: the envelope and the allowed fields of the data.
    Redacted,
    /// Not shown (not even that it exists).
    Nothing,
}

/// Every event type with a class other than [`Class::Internal`], and the internal ones, so a
/// new type must be placed here (a test checks every type of `DomainEvent::TYPES` is).
pub const CLASSES: &[(&str, Class)] = &[
    ("IncidentReported", Class::Internal),
    ("IncidentUpdated", Class::Internal),
    ("IncidentVerified", Class::Internal),
    ("IncidentEscalated", Class::Internal),
    ("IncidentClosed", Class::Internal),
    ("AreaSecurityLevelSet", Class::Internal),
    ("AreaRegistered", Class::Internal),
    ("DutyStationRegistered", Class::Internal),
    ("PersonRegistered", Class::Internal),
    ("AgencyRegistered", Class::Internal),
    ("HostageCaseOpened", Class::Restricted),
    ("ProofOfLifeReceived", Class::Restricted),
    ("NegotiationContactLogged", Class::Restricted),
    ("HostageReleased", Class::Restricted),
    ("HostageDeceased", Class::Restricted),
    ("HostageCaseClosed", Class::Restricted),
    ("SurgeRequested", Class::Internal),
    ("SurgeApproved", Class::Internal),
    ("SurgeRejected", Class::Internal),
    ("SurgeOfficerAssigned", Class::Internal),
    ("SurgeDeployed", Class::Internal),
    ("SurgeCompleted", Class::Internal),
    ("SurgeCancelled", Class::Internal),
    ("SurgeOfficerReserved", Class::Internal),
    ("SurgeOfficerReleased", Class::Internal),
    ("RelocationOrdered", Class::Internal),
    ("RollCallEntryAdded", Class::Internal),
    ("PersonMarked", Class::Internal),
    ("OrderCompleted", Class::Internal),
    ("OrderRescinded", Class::Internal),
    ("PersonArrivedInArea", Class::Internal),
    ("PersonLeftArea", Class::Internal),
    ("ClearanceRequested", Class::Internal),
    ("ClearanceApproved", Class::Internal),
    ("ClearanceRefused", Class::Internal),
    ("ArrivalRecorded", Class::Internal),
    ("DepartureRecorded", Class::Internal),
    ("BroadcastIssued", Class::Internal),
    ("BroadcastApproved", Class::Internal),
    ("BroadcastDeliveryAttempted", Class::AgencyScoped),
    ("BroadcastDelivered", Class::AgencyScoped),
    ("BroadcastDeliveryFailed", Class::AgencyScoped),
    ("BroadcastAcknowledged", Class::AgencyScoped),
    ("BroadcastResent", Class::Internal),
    ("BroadcastEscalated", Class::Internal),
    ("BroadcastCancelled", Class::Internal),
    ("BroadcastTriggerSuppressed", Class::Internal),
    (crate::audit::ACCESS_DENIED, Class::Internal),
    (crate::audit::DETAILS_READ, Class::Internal),
];

/// The class of `event_type`; [`Class::Unclassified`] for a type not in [`CLASSES`].
pub fn class_of(event_type: &str) -> Class {
    CLASSES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map_or(Class::Unclassified, |(_, c)| *c)
}

/// Roles that read the raw log (`GET /api/v1/events`) and see the centre's operations whole.
const CENTRE: &[Role] = &[Role::DutyOfficer, Role::CrisisManager, Role::Admin];

/// The decision for a caller of `role` on an event of `class`, when the event concerns
/// `agency` (for [`Class::AgencyScoped`]) and the caller speaks for `own_agency`.
pub fn sight_of(role: Role, own_agency: Option<&str>, class: Class, agency: Option<&str>) -> Sight {
    match class {
        Class::Restricted if policy::HOSTAGE_DETAILS.contains(&role) => Sight::WholeAudited,
        Class::Restricted | Class::Unclassified if CENTRE.contains(&role) => Sight::Redacted,
        Class::Internal | Class::AgencyScoped if CENTRE.contains(&role) => Sight::Whole,
        Class::AgencyScoped
            if role == Role::AgencyFocalPoint && own_agency.is_some() && own_agency == agency =>
        {
            Sight::Whole
        }
        _ => Sight::Nothing,
    }
}

/// What `actor` may see of `event`.
pub fn sight(actor: &Actor, event: &RecordedEvent) -> Sight {
    let class = class_of(&event.event_type);
    let agency = match class {
        Class::AgencyScoped => event.data.get("agency").and_then(Value::as_str),
        _ => None,
    };
    sight_of(actor.role, actor.agency.as_deref(), class, agency)
}

/// The fields of a redacted event's data that stay, by type; every other field goes.
/// Counted lists become their length under `<name>_count`.
fn kept(event_type: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match event_type {
        "HostageCaseOpened" => (&["incident_id", "country"], &["persons"]),
        "ProofOfLifeReceived"
        | "NegotiationContactLogged"
        | "HostageReleased"
        | "HostageDeceased" => (&["at"], &[]),
        "HostageCaseClosed" => (&[], &["accounting"]),
        _ => (&[], &[]),
    }
}

/// The redacted form of `event`: its envelope, `data` reduced to the fields its type allows
/// (ids, country, times, and counts of lists) with `"redacted": true`.
pub fn redact(event: &RecordedEvent) -> RecordedEvent {
    let (fields, counted) = kept(&event.event_type);
    let mut data = Map::new();
    data.insert("redacted".to_owned(), Value::Bool(true));
    if let Value::Object(original) = &event.data {
        for f in fields {
            if let Some(v) = original.get(*f) {
                data.insert((*f).to_owned(), v.clone());
            }
        }
        for f in counted {
            if let Some(Value::Array(items)) = original.get(*f) {
                data.insert(format!("{f}_count"), Value::from(items.len()));
            }
        }
    }
    RecordedEvent {
        data: Value::Object(data),
        ..event.clone()
    }
}

/// `event` as `actor` may see it, with whether the read must be audited first; `None` when
/// nothing of it may be shown.
pub fn shown(actor: &Actor, event: &RecordedEvent) -> Option<(RecordedEvent, bool)> {
    match sight(actor, event) {
        Sight::Whole => Some((event.clone(), false)),
        Sight::WholeAudited => Some((event.clone(), true)),
        Sight::Redacted => Some((redact(event), false)),
        Sight::Nothing => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainEvent;
    use crate::envelope::{Meta, StreamName};
    use proptest::prelude::*;
    use serde_json::json;

    fn actor(role: Role, agency: Option<&str>) -> Actor {
        Actor {
            user: "u".into(),
            role,
            scope: None,
            agency: agency.map(str::to_owned),
        }
    }

    fn recorded(event_type: &str, data: Value) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::from_u128(1),
            stream: StreamName::parse(&format!("hostage-{}", uuid::Uuid::from_u128(2))).unwrap(),
            event_type: event_type.into(),
            v: 1,
            data,
            meta: Meta::default(),
            position: 7,
            version: 1,
            recorded_at: time::macros::datetime!(2026-11-27 02:00 UTC),
        }
    }

    fn opened() -> RecordedEvent {
        recorded(
            "HostageCaseOpened",
            json!({"incident_id": uuid::Uuid::from_u128(3), "country": "SO",
                   "persons": ["P-001", "P-002"], "captors": "Group X",
                   "location": {"lat": 2.0, "lon": 45.0}}),
        )
    }

    #[test]
    fn every_known_type_has_a_class() {
        for (t, _, _) in DomainEvent::TYPES {
            assert!(
                CLASSES.iter().any(|(c, _)| c == t),
                "{t} has no class in CLASSES"
            );
        }
        assert_eq!(class_of("SomethingNew"), Class::Unclassified);
    }

    #[test]
    fn the_table() {
        use Sight::*;
        // role × class: Internal, AgencyScoped (own agency), AgencyScoped (other), Restricted, Unclassified.
        let rows: [(Role, [Sight; 5]); 6] = [
            (Role::DutyOfficer, [Whole, Whole, Whole, Redacted, Redacted]),
            (Role::Admin, [Whole, Whole, Whole, Redacted, Redacted]),
            (
                Role::CrisisManager,
                [Whole, Whole, Whole, WholeAudited, Redacted],
            ),
            (
                Role::AgencyFocalPoint,
                [Nothing, Whole, Nothing, Nothing, Nothing],
            ),
            (Role::FieldOfficer, [Nothing; 5]),
            (Role::WallScreen, [Nothing; 5]),
        ];
        for (role, expect) in rows {
            let own = Some("wfp");
            let got = [
                sight_of(role, own, Class::Internal, None),
                sight_of(role, own, Class::AgencyScoped, Some("wfp")),
                sight_of(role, own, Class::AgencyScoped, Some("undp")),
                sight_of(role, own, Class::Restricted, None),
                sight_of(role, own, Class::Unclassified, None),
            ];
            assert_eq!(got, expect, "{role:?}");
        }
        // A focal point without an agency sees no agency's rows.
        assert_eq!(
            sight_of(Role::AgencyFocalPoint, None, Class::AgencyScoped, None),
            Nothing
        );
    }

    #[test]
    fn a_duty_officer_gets_a_hostage_case_without_persons_captors_or_location() {
        let (shown, audit) = shown(&actor(Role::DutyOfficer, None), &opened()).unwrap();
        assert!(!audit);
        let text = serde_json::to_string(&shown).unwrap();
        for secret in ["P-001", "Group X", "captors", "location", "\"persons\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown.data["persons_count"], 2);
        assert_eq!(shown.data["country"], "SO");
        assert_eq!(shown.data["redacted"], true);
        assert_eq!(shown.position, 7);
        // A crisis manager gets it whole, but only through an audited read.
        let (whole, audit) = super::shown(&actor(Role::CrisisManager, None), &opened()).unwrap();
        assert!(audit);
        assert_eq!(whole, opened());
    }

    fn any_role() -> impl Strategy<Value = Role> {
        proptest::sample::select(Role::ALL.to_vec())
    }

    proptest! {
        /// No role that may not read hostage details ever gets a hostage event's free text,
        /// whatever the event's data holds.
        #[test]
        fn restricted_text_never_leaves_unaudited(
            role in any_role(),
            t in proptest::sample::select(vec!["HostageCaseOpened", "ProofOfLifeReceived",
                "NegotiationContactLogged", "HostageReleased", "HostageDeceased",
                "HostageCaseClosed", "Unheard", "HostageCaseOpenedV9"]),
            keys in proptest::collection::vec("[a-z_]{1,12}", 0..6),
            secret in "[A-Z]{12}",
        ) {
            let mut data = Map::new();
            for k in &keys {
                data.insert(k.clone(), Value::String(secret.clone()));
            }
            data.insert("persons".into(), json!([secret.clone()]));
            data.insert("captors".into(), Value::String(secret.clone()));
            data.insert("note".into(), Value::String(secret.clone()));
            let e = recorded(t, Value::Object(data));
            match super::shown(&actor(role, Some("wfp")), &e) {
                None => {}
                Some((s, true)) => prop_assert!(policy::HOSTAGE_DETAILS.contains(&role) && s == e),
                Some((s, false)) => {
                    let text = serde_json::to_string(&s.data).unwrap();
                    let leaks = keys.iter().any(|k| ["incident_id", "country", "at"].contains(&k.as_str()));
                    prop_assert!(leaks || !text.contains(&secret), "{} leaked {}", t, text);
                }
            }
        }

        /// Redaction keeps the envelope: position, stream, type, id and time.
        #[test]
        fn redaction_keeps_the_envelope(t in "[A-Za-z]{1,30}") {
            let e = recorded(&t, json!({"x": 1}));
            let r = redact(&e);
            prop_assert_eq!((r.id, r.stream, r.event_type, r.position, r.recorded_at),
                (e.id, e.stream, e.event_type, e.position, e.recorded_at));
        }
    }
}
