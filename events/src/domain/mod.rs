//! Typed domain events: past-tense facts, one module per stream category.
//!
//! Every event type is a struct (refusing unknown fields) with a `validate` method, and a
//! variant of [`DomainEvent`] named exactly like its type string (`"IncidentReported"`).
//! [`DomainEvent::to_new_event`] turns one into an envelope for the store;
//! [`DomainEvent::decode`] reads a recorded event back: it upcasts old schema versions,
//! deserialises and validates, and answers [`Decoded::Unknown`] (never a panic, never a
//! silent drop) for a type or version this build does not know or for data it cannot read.
//!
//! Beside its events, a module holds the command bodies that are not events and what its
//! service answers (the records and views of `get` and of its list's items), with
//! `utoipa::ToSchema`: the gateway reads and documents these types and may not depend on a
//! service.
//!
//! # Changing an event's schema
//! Recorded events are never rewritten, so every version ever written must stay readable:
//! 1. bump the type's version in the [`DomainEvent`] table (the `= N` after its name);
//! 2. write a function turning version N−1 data into version N data, and never change it again;
//! 3. register it in [`UPCASTERS`].
//!
//! Worked example: `AreaSecurityLevelSet` v1 called its reason `note`. It is now v2, and
//! [`level::upcast_v1_note_to_reason`] renames the field when a v1 event is read.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{Decoded, Upcaster, upcast};
use crate::envelope::{Meta, NewEvent, RecordedEvent};
use crate::validate::ValidationError;

pub mod agency;
pub mod area;
pub mod broadcast;
pub mod clearance;
pub mod hostage;
pub mod incident;
pub mod level;
pub mod person;
pub mod relocation;
pub mod station;
pub mod surge;
pub mod surge_officer;

/// Longest reason, note or outcome.
pub const MAX_REASON: usize = 2_000;
/// Longest free-text narrative (proof of life, negotiation summary).
pub const MAX_TEXT: usize = 10_000;

/// Every schema upgrade step, read by [`DomainEvent::decode`].
pub static UPCASTERS: &[Upcaster] = &[Upcaster {
    event_type: "AreaSecurityLevelSet",
    from_v: 1,
    up: level::upcast_v1_note_to_reason,
}];

/// Quotes at most 64 characters of untrusted text in an error message.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Declares [`DomainEvent`] and its dispatch from one table: `category { Type = version }`.
macro_rules! domain_events {
    ($($cat:ident { $($name:ident = $v:literal),+ $(,)? })+) => {
        /// Any domain event, at its current schema version. As JSON (for tests and tools) it is
        /// `{"type": "IncidentReported", "data": {…}}`, not validated: use
        /// [`DomainEvent::decode`] to read the log.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data", deny_unknown_fields)]
        pub enum DomainEvent {
            $($(
                #[doc = concat!("See [`", stringify!($cat), "::", stringify!($name), "`].")]
                $name($cat::$name),
            )+)+
        }

        impl DomainEvent {
            /// Every known event type as `(type, category, current schema version)`.
            pub const TYPES: &'static [(&'static str, &'static str, u32)] =
                &[$($((stringify!($name), stringify!($cat), $v),)+)+];

            /// The type string, e.g. `IncidentReported`.
            pub fn event_type(&self) -> &'static str {
                match self { $($(Self::$name(_) => stringify!($name),)+)+ }
            }

            /// The stream category: `incident`, `level`, `hostage`, `surge`, `surge_officer`,
            /// `relocation`, `clearance`, `broadcast`, or one of the reference data.
            pub fn category(&self) -> &'static str {
                match self { $($(Self::$name(_) => stringify!($cat),)+)+ }
            }

            /// The current schema version of this event's type.
            pub fn schema_version(&self) -> u32 {
                match self { $($(Self::$name(_) => $v,)+)+ }
            }

            /// Checks the event's fields.
            pub fn validate(&self) -> Result<(), ValidationError> {
                match self { $($(Self::$name(e) => e.validate(),)+)+ }
            }

            fn data(&self) -> Result<Value, serde_json::Error> {
                match self { $($(Self::$name(e) => serde_json::to_value(e),)+)+ }
            }

            fn from_data(event_type: &str, data: &Value) -> Result<Self, String> {
                // Deserialising from a borrowed tree: no copy of the event's data.
                let read = match event_type {
                    $($(stringify!($name) => $cat::$name::deserialize(data).map(Self::$name),)+)+
                    other => return Err(format!("unknown event type {:?}", short(other))),
                };
                read.map_err(|e| e.to_string())
            }

            fn from_json(event_type: &str, text: &str) -> Result<Self, String> {
                // Straight from the stored text: no tree in between.
                let read = match event_type {
                    $($(stringify!($name) => serde_json::from_str::<$cat::$name>(text).map(Self::$name),)+)+
                    other => return Err(format!("unknown event type {:?}", short(other))),
                };
                read.map_err(|e| e.to_string())
            }
        }

        $($(
            impl From<$cat::$name> for DomainEvent {
                fn from(e: $cat::$name) -> Self {
                    Self::$name(e)
                }
            }
        )+)+
    };
}

domain_events! {
    incident {
        IncidentReported = 1, IncidentUpdated = 1, IncidentVerified = 1, IncidentEscalated = 1,
        IncidentClosed = 1,
    }
    level { AreaSecurityLevelSet = 2 }
    area { AreaRegistered = 1 }
    station { DutyStationRegistered = 1 }
    person { PersonRegistered = 1 }
    agency { AgencyRegistered = 1 }
    hostage {
        HostageCaseOpened = 1, ProofOfLifeReceived = 1, NegotiationContactLogged = 1,
        HostageReleased = 1, HostageDeceased = 1, HostageCaseClosed = 1,
    }
    surge {
        SurgeRequested = 1, SurgeApproved = 1, SurgeRejected = 1, SurgeOfficerAssigned = 1,
        SurgeDeployed = 1, SurgeCompleted = 1, SurgeCancelled = 1,
    }
    surge_officer { SurgeOfficerReserved = 1, SurgeOfficerReleased = 1 }
    relocation {
        RelocationOrdered = 1, RollCallEntryAdded = 1, PersonMarked = 1, OrderCompleted = 1,
        OrderRescinded = 1, PersonArrivedInArea = 1, PersonLeftArea = 1,
    }
    clearance {
        ClearanceRequested = 1, ClearanceApproved = 1, ClearanceRefused = 1,
        ArrivalRecorded = 1, DepartureRecorded = 1,
    }
    broadcast {
        BroadcastIssued = 1, BroadcastApproved = 1, BroadcastDeliveryAttempted = 1,
        BroadcastDelivered = 1, BroadcastDeliveryFailed = 1, BroadcastAcknowledged = 1,
        BroadcastResent = 1, BroadcastEscalated = 1, BroadcastCancelled = 1,
        BroadcastTriggerSuppressed = 1,
    }
}

impl DomainEvent {
    /// The current schema version of `event_type`, or `None` if this build does not know it.
    pub fn current_version(event_type: &str) -> Option<u32> {
        Self::TYPES
            .iter()
            .find(|(t, _, _)| *t == event_type)
            .map(|(_, _, v)| *v)
    }

    /// The envelope to append. Call [`DomainEvent::validate`] first (or use
    /// [`DomainEvent::try_to_new_event`]): a valid event always serialises; an invalid one
    /// that cannot (a timestamp past year 9999) gets `null` data, which every reader refuses.
    pub fn to_new_event(&self, id: Uuid, meta: Meta) -> NewEvent {
        NewEvent {
            id,
            event_type: self.event_type().to_owned(),
            v: self.schema_version(),
            data: self.data().unwrap_or(Value::Null),
            meta,
        }
    }

    /// Validates, then builds the envelope to append.
    pub fn try_to_new_event(&self, id: Uuid, meta: Meta) -> Result<NewEvent, ValidationError> {
        self.validate()?;
        Ok(self.to_new_event(id, meta))
    }

    /// Reads a recorded event as a typed, validated event at its current version.
    pub fn decode(recorded: &RecordedEvent) -> Decoded<DomainEvent> {
        match Self::decode_ref(&recorded.event_type, recorded.v, &recorded.data) {
            Ok(event) => Decoded::Known(event),
            Err(reason) => Decoded::Unknown { reason },
        }
    }

    /// Reads `data` written as version `v` of `event_type`: upcasts it, deserialises it and
    /// validates it. The error says why it cannot be read.
    pub fn decode_data(event_type: &str, v: u32, data: Value) -> Result<DomainEvent, String> {
        Self::decode_ref(event_type, v, &data)
    }

    /// Reads `data`, the JSON text of version `v` of `event_type` as stored, like
    /// [`DomainEvent::decode_data`] but without building a `Value` tree when `v` is current
    /// (the fold's common case): the text is deserialised straight into the typed event.
    pub fn decode_json(event_type: &str, v: u32, data: &str) -> Result<DomainEvent, String> {
        let current = Self::current_version(event_type)
            .ok_or_else(|| format!("unknown event type {:?}", short(event_type)))?;
        if v != current {
            let data: Value = serde_json::from_str(data)
                .map_err(|e| format!("{event_type} v{v}: unreadable data: {e}"))?;
            let data = upcast(UPCASTERS, event_type, v, current, data)?;
            return Self::finish(event_type, v, &data);
        }
        // serde would also read a struct written as an array; events are objects only.
        if !data.trim_start().starts_with('{') {
            return Err(format!("{event_type} v{v}: data must be a JSON object"));
        }
        let event = Self::from_json(event_type, data)
            .map_err(|e| format!("{event_type} v{v}: unreadable data: {e}"))?;
        event
            .validate()
            .map_err(|e| format!("{event_type} v{v}: invalid data: {e}"))?;
        Ok(event)
    }

    fn decode_ref(event_type: &str, v: u32, data: &Value) -> Result<DomainEvent, String> {
        let current = Self::current_version(event_type)
            .ok_or_else(|| format!("unknown event type {:?}", short(event_type)))?;
        if v == current {
            // The common case (replay, live folds): read the data where it is.
            return Self::finish(event_type, v, data);
        }
        let data = upcast(UPCASTERS, event_type, v, current, data.clone())?;
        Self::finish(event_type, v, &data)
    }

    fn finish(event_type: &str, v: u32, data: &Value) -> Result<DomainEvent, String> {
        // serde would also read a struct written as an array; events are objects only.
        if !data.is_object() {
            return Err(format!("{event_type} v{v}: data must be a JSON object"));
        }
        let event = Self::from_data(event_type, data)
            .map_err(|e| format!("{event_type} v{v}: unreadable data: {e}"))?;
        event
            .validate()
            .map_err(|e| format!("{event_type} v{v}: invalid data: {e}"))?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests;
