//! Surge officer reservations (stream category `surge_officer`, one stream per officer): the
//! log's own record of which surge holds an officer, so that "one officer on one active surge"
//! holds with the surge service running on several nodes.
//!
//! Two assignments of one officer to two different surges write two different `surge`
//! streams, which no expected version can order; both first append a reservation to the
//! officer's one stream here, with the version they read, so exactly one of them wins. The
//! surge service owns the rules (`services/surge`, `reserve.rs`); these are the facts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::area::named_stream;
use crate::envelope::{Category, StreamName};
use crate::validate::{ValidationError, id};

/// The stream category.
pub const CATEGORY: &str = "surge_officer";

/// The reservation stream of officer `officer` (a person id): `surge_officer-<uuid v5>`.
pub fn stream_for(officer: &str) -> StreamName {
    named_stream(CATEGORY, "surge-officer", officer)
}

/// The reservation stream whose id is `id` (what [`stream_for`] derives from an officer).
pub fn stream_with_id(id: Uuid) -> StreamName {
    // A fixed lower-case name: always a valid category.
    StreamName::new(Category(CATEGORY.to_owned()), id)
}

/// An officer was reserved for a surge by an `assign` command: the surge's
/// `SurgeOfficerAssigned` follows under the command's id (written by that command, its
/// retry, or whichever assignment of the officer comes next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeOfficerReserved {
    /// The officer's person id.
    pub officer: String,
    /// The surge that holds them.
    pub surge: Uuid,
    /// The id of the `assign` command (and of the assignment event it writes on the surge).
    pub command: Uuid,
    /// The duty station they come from (their registered station when reserved).
    pub from_duty_station: String,
}

impl SurgeOfficerReserved {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("officer", &self.officer)?;
        id("from_duty_station", &self.from_duty_station)
    }
}

/// The reservation made by `command` for `surge` ended: the surge completed or was cancelled,
/// or it could no longer take the officer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeOfficerReleased {
    /// The officer's person id.
    pub officer: String,
    /// The surge that held them.
    pub surge: Uuid,
    /// The `command` of the reservation it ends.
    pub command: Uuid,
}

impl SurgeOfficerReleased {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("officer", &self.officer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_officer_and_the_events_are_checked() {
        assert_eq!(stream_for("P-1"), stream_for("P-1"));
        assert_ne!(stream_for("P-1"), stream_for("P-2"));
        assert_eq!(stream_for("P-1").category().as_str(), CATEGORY);
        assert_eq!(stream_with_id(stream_for("P-1").id()), stream_for("P-1"));
        assert_ne!(
            stream_for("P-1").id(),
            super::super::person::stream_for("P-1").id(),
            "not the person's own stream id"
        );
        let r = SurgeOfficerReserved {
            officer: "P-1".into(),
            surge: Uuid::from_u128(1),
            command: Uuid::from_u128(2),
            from_duty_station: "KEN-NBO".into(),
        };
        assert!(r.validate().is_ok());
        let back: SurgeOfficerReserved =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let blank = SurgeOfficerReserved {
            officer: " ".into(),
            ..r
        };
        assert_eq!(blank.validate().unwrap_err().field, "officer");
        let released = SurgeOfficerReleased {
            officer: "P 1".into(),
            surge: Uuid::from_u128(1),
            command: Uuid::from_u128(2),
        };
        assert_eq!(released.validate().unwrap_err().field, "officer");
    }
}
