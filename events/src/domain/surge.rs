//! Surge events (stream category `surge`): extra security officers sent to a duty station.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::MAX_REASON;
use crate::validate::{Country, ValidationError, count, id, line, non_blank, timestamp};

/// The stream of surge `id` (the id of the command that created it): `surge-<id>`.
pub fn stream_for(id: uuid::Uuid) -> crate::StreamName {
    // "surge" is a valid category (lower-case letters).
    crate::StreamName::new(crate::Category("surge".to_owned()), id)
}

/// Most officers one surge may ask for.
pub const MAX_OFFICERS: u16 = 200;
/// Most assets (vehicles, equipment) one surge may ask for.
pub const MAX_ASSETS: usize = 100;
/// Longest asset description.
pub const MAX_ASSET_LEN: usize = 200;

/// A duty station asked for a surge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurgeRequested {
    /// The duty station that needs help.
    pub duty_station: String,
    /// Its country.
    pub country: Country,
    /// Why.
    pub reason: String,
    /// How many officers, 1 to 200.
    pub officers_needed: u16,
    /// Assets needed (armoured vehicles, communications kits, ...), at most 100.
    #[serde(default)]
    pub assets: Vec<String>,
}

impl SurgeRequested {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("duty_station", &self.duty_station)?;
        non_blank("reason", &self.reason, MAX_REASON)?;
        if !(1..=MAX_OFFICERS).contains(&self.officers_needed) {
            return Err(ValidationError::new(
                "officers_needed",
                format!("must be 1 to {MAX_OFFICERS}, got {}", self.officers_needed),
            ));
        }
        count("assets", self.assets.len(), 0, MAX_ASSETS)?;
        for (i, a) in self.assets.iter().enumerate() {
            line(&format!("assets[{i}]"), a, MAX_ASSET_LEN)?;
        }
        Ok(())
    }
}

/// The surge was approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeApproved {
    /// The user who approved it.
    pub by: String,
}

impl SurgeApproved {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)
    }
}

/// The surge was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeRejected {
    /// The user who rejected it.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl SurgeRejected {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)?;
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

/// An officer was assigned to the surge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeOfficerAssigned {
    /// The officer.
    pub officer: String,
    /// The duty station they come from.
    pub from_duty_station: String,
}

impl SurgeOfficerAssigned {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("officer", &self.officer)?;
        id("from_duty_station", &self.from_duty_station)
    }
}

/// The surge team arrived and started work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurgeDeployed {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl SurgeDeployed {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        timestamp("at", self.at)
    }
}

/// The surge mission ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurgeCompleted {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl SurgeCompleted {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        timestamp("at", self.at)
    }
}

/// A requested or approved surge was called off before it deployed: it is no longer needed.
/// Its officers are free again (a surge that is cancelled is no longer active).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeCancelled {
    /// The user who cancelled it.
    pub by: String,
    /// Why, on one line (it is shown on the board's timeline).
    pub reason: String,
}

impl SurgeCancelled {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)?;
        line("reason", &self.reason, MAX_REASON)
    }
}

// --- Command bodies that are not events: what `vigil.cmd.surge.<name>` reads (and the
// gateway documents), checked against the surge and the reference data by the surge service.

/// Body of `assign`'s change: the officer; where they come from is read from the reference
/// data (the officer's registered duty station), never from the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignOfficer {
    /// The officer's person id (`P-000123`).
    pub officer: String,
}

// --- What the surge service answers (`GET /api/v1/surges` and `/{id}`).

/// Where a surge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurgeStatus {
    /// Asked for, not yet decided.
    Requested,
    /// Approved: officers may be assigned.
    Approved,
    /// Rejected; no more changes.
    Rejected,
    /// The team is at the station.
    Deployed,
    /// The mission ended, the officers went home; no more changes.
    Completed,
    /// Called off before deployment (no longer needed); its officers are free again; no more
    /// changes.
    Cancelled,
}

impl SurgeStatus {
    /// Whether officers on the surge are away from their stations (approved or deployed).
    pub fn is_active(self) -> bool {
        matches!(self, SurgeStatus::Approved | SurgeStatus::Deployed)
    }

    /// The status as written in answers and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            SurgeStatus::Requested => "requested",
            SurgeStatus::Approved => "approved",
            SurgeStatus::Rejected => "rejected",
            SurgeStatus::Deployed => "deployed",
            SurgeStatus::Completed => "completed",
            SurgeStatus::Cancelled => "cancelled",
        }
    }
}

/// An officer on a surge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SurgeAssignment {
    /// The officer's person id.
    pub officer: String,
    /// The duty station they came from (their registered station when assigned).
    pub from_duty_station: String,
    /// When the assignment was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub assigned_at: OffsetDateTime,
}

/// A surge as its stream tells it. The surge service folds it (its aggregate is this record
/// with the rules) and answers it as a [`SurgeView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Surge {
    /// The surge's id (the stream is `surge-<id>`).
    pub id: uuid::Uuid,
    /// The duty station that needs help.
    pub duty_station: String,
    /// Its country.
    pub country: Country,
    /// Why.
    pub reason: String,
    /// How many officers were asked for.
    pub officers_needed: u16,
    /// Assets asked for.
    pub assets: Vec<String>,
    /// Where it is in its life.
    pub status: SurgeStatus,
    /// Who asked (the request's actor).
    pub requested_by: Option<String>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub rejected_reason: Option<String>,
    /// Who cancelled it.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancelled_reason: Option<String>,
    /// The officers assigned, in order of assignment.
    pub officers: Vec<SurgeAssignment>,
    /// When the team was deployed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deployed_at: Option<OffsetDateTime>,
    /// When the mission ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Log position of the request.
    pub position: u64,
    /// When the centre received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

impl Surge {
    /// Whether `officer` is assigned to this surge.
    pub fn has_officer(&self, officer: &str) -> bool {
        self.officers.iter().any(|a| a.officer == officer)
    }

    /// Whether it can still change.
    pub fn is_open(&self) -> bool {
        !matches!(
            self.status,
            SurgeStatus::Rejected | SurgeStatus::Completed | SurgeStatus::Cancelled
        )
    }
}

/// A surge as `GET /api/v1/surges/{id}` shows it and each item of the list: the surge, and
/// the gap it leaves (built by the surge service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SurgeView {
    /// The surge, with its officers and the station each came from.
    #[serde(flatten)]
    pub surge: Surge,
    /// How many officers are assigned.
    pub officers_assigned: usize,
    /// Officers away from each duty station because of this surge: the gap it leaves there
    /// (empty once it is completed, rejected or cancelled: they are back).
    pub away_from: std::collections::BTreeMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;
    use time::macros::datetime;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(e: &T) {
        let back: T = serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }

    #[test]
    fn surge_events_are_checked_and_round_trip() {
        let req = SurgeRequested {
            duty_station: "SSD-JUB".into(),
            country: Country::parse("SS").unwrap(),
            reason: "fighting in town".into(),
            officers_needed: 6,
            assets: vec!["2 armoured vehicles".into()],
        };
        assert!(req.validate().is_ok());
        round_trip(&req);
        let zero = SurgeRequested {
            officers_needed: 0,
            ..req.clone()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "officers_needed: must be 1 to 200, got 0"
        );
        assert!(
            SurgeRequested {
                officers_needed: 201,
                ..req.clone()
            }
            .validate()
            .is_err()
        );
        let blank = SurgeRequested {
            assets: vec![" ".into()],
            ..req
        };
        assert_eq!(blank.validate().unwrap_err().field, "assets[0]");

        let at = datetime!(2024-06-01 08:00 UTC);
        round_trip(&SurgeApproved { by: "cm.1".into() });
        round_trip(&SurgeRejected {
            by: "cm.1".into(),
            reason: "no capacity".into(),
        });
        round_trip(&SurgeOfficerAssigned {
            officer: "o.7".into(),
            from_duty_station: "KEN-NBO".into(),
        });
        round_trip(&SurgeDeployed { at });
        round_trip(&SurgeCompleted { at });
        assert!(SurgeApproved { by: "".into() }.validate().is_err());
        round_trip(&SurgeCancelled {
            by: "cm.1".into(),
            reason: "the convoy got through".into(),
        });
        let cancelled = |reason: &str| SurgeCancelled {
            by: "cm.1".into(),
            reason: reason.into(),
        };
        assert!(cancelled("").validate().is_err());
        assert!(cancelled("  ").validate().is_err());
        assert!(cancelled("two\nlines").validate().is_err());
        assert!(cancelled(&"x".repeat(MAX_REASON + 1)).validate().is_err());
        assert!(cancelled("not needed").validate().is_ok());
    }
}
