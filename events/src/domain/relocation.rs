//! Relocation and evacuation order events (stream category `relocation`), with the roll call
//! that accounts for every person the order covers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::MAX_REASON;
use crate::validate::{
    Country, ValidationError, id, line, non_blank, opt_id, opt_non_blank, timestamp,
};

/// The stream of relocation `id` (the id of the command that created it): `relocation-<id>`.
pub fn stream_for(id: uuid::Uuid) -> crate::StreamName {
    // "relocation" is a valid category (lower-case letters).
    crate::StreamName::new(crate::Category("relocation".to_owned()), id)
}

/// Longest destination description.
pub const MAX_DESTINATION: usize = 200;

/// Relocation (elsewhere in the country) or evacuation (out of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Move to a safer place in the country.
    Relocation,
    /// Leave the country.
    Evacuation,
}

/// Who the order covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everyone.
    AllPersonnel,
    /// Everyone but essential staff.
    NonEssential,
    /// Eligible family members.
    Dependants,
}

/// A relocation or evacuation was ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelocationOrdered {
    /// Relocation or evacuation.
    pub kind: OrderKind,
    /// The country concerned.
    pub country: Country,
    /// The area concerned, if narrower than the country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The duty station concerned, if only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_station: Option<String>,
    /// Who must move.
    pub scope: Scope,
    /// Where to.
    pub destination: String,
    /// By when.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

impl RelocationOrdered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        opt_id("area", self.area.as_deref())?;
        opt_id("duty_station", self.duty_station.as_deref())?;
        line("destination", &self.destination, MAX_DESTINATION)?;
        timestamp("deadline", self.deadline)
    }
}

/// A person was added to the order's roll call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollCallEntryAdded {
    /// The person.
    pub person: String,
    /// Their agency, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// Their duty station, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_station: Option<String>,
    /// How many dependants move with them.
    #[serde(default)]
    pub dependants: u16,
}

impl RollCallEntryAdded {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        opt_id("agency", self.agency.as_deref())?;
        opt_id("duty_station", self.duty_station.as_deref())
    }
}

/// What moved a person into or out of an order's place after the order was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceCause {
    /// Their personnel record: a new person, or a new duty station.
    Assignment,
    /// A clearance: approved, refused, an arrival or a departure.
    Clearance,
}

/// A person came into the order's place after the order was given (by the same rule that
/// built the roll call): added to the roll call as a late arrival, or back in the area if
/// they had left it. The event's `meta.causation_id` is the event that moved them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonArrivedInArea {
    /// The person.
    pub person: String,
    /// Their agency, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// Their duty station, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_station: Option<String>,
    /// How many dependants move with them.
    #[serde(default)]
    pub dependants: u16,
    /// What brought them.
    pub cause: PresenceCause,
}

impl PersonArrivedInArea {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        opt_id("agency", self.agency.as_deref())?;
        opt_id("duty_station", self.duty_station.as_deref())
    }
}

/// A person on the roll call is no longer in the order's place (assigned elsewhere, departed,
/// or no longer covered by the order): they stay on the roll call, marked "left the area".
/// The event's `meta.causation_id` is the event that moved them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonLeftArea {
    /// The person.
    pub person: String,
    /// What took them away.
    pub cause: PresenceCause,
}

impl PersonLeftArea {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)
    }
}

/// Where a person on the roll call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Confirmed safe where they are.
    Safe,
    /// Arrived at the destination.
    Relocated,
    /// Cannot be reached.
    Missing,
    /// Injured.
    Injured,
}

/// A person on the roll call was marked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonMarked {
    /// The person.
    pub person: String,
    /// Their status.
    pub status: PersonStatus,
    /// The user who marked them.
    pub by: String,
    /// Details, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PersonMarked {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        id("by", &self.by)?;
        opt_non_blank("note", self.note.as_deref(), MAX_REASON)
    }
}

/// Everyone covered by the order is accounted for; the order is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCompleted {
    /// Closing remarks, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl OrderCompleted {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        opt_non_blank("note", self.note.as_deref(), MAX_REASON)
    }
}

/// The order was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRescinded {
    /// Why.
    pub reason: String,
}

impl OrderRescinded {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

// --- Command bodies that are not events: what `vigil.cmd.relocation.<name>` reads (and the
// gateway documents), checked against the order by the relocation service.

/// Body of `mark`: one person marked on a roll call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPerson {
    /// The person.
    pub person: String,
    /// Their status.
    pub status: PersonStatus,
    /// Details.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `mark_many`: several people marked with one status (the console's bulk mark).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPersons {
    /// The people (the relocation service takes at most 499 at a time).
    pub persons: Vec<String>,
    /// Their status.
    pub status: PersonStatus,
    /// Details.
    #[serde(default)]
    pub note: Option<String>,
}

// --- What the relocation service's list answers (`GET /api/v1/orders`).

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Given; people are being accounted for.
    Active,
    /// Done.
    Completed,
    /// Withdrawn.
    Rescinded,
}

/// Counts of a roll call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RollCallTally {
    /// People on the roll call.
    pub total: usize,
    /// Latest mark safe, relocated or injured.
    pub accounted: usize,
    /// Latest mark missing.
    pub missing: usize,
    /// Not marked yet.
    pub unmarked: usize,
    /// On the roll call as late arrivals (whatever their mark).
    pub late_arrivals: usize,
    /// Marked "left the area" (whatever their mark).
    pub left_area: usize,
    /// accounted / total × 100 (100 for an empty roll call).
    pub accounted_pct: f64,
}

/// One order in a list: what was ordered, where it is, its counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderSummary {
    /// The order.
    pub id: uuid::Uuid,
    /// What was ordered.
    #[serde(flatten)]
    pub ordered: RelocationOrdered,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Counts.
    pub tally: RollCallTally,
    /// How many people are missing or unmarked after the deadline.
    pub findings: usize,
    /// Log position of the order.
    pub position: u64,
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
    fn relocation_events_are_checked_and_round_trip() {
        let order = RelocationOrdered {
            kind: OrderKind::Evacuation,
            country: Country::parse("SD").unwrap(),
            area: Some("SDN-KRT".into()),
            duty_station: None,
            scope: Scope::NonEssential,
            destination: "Port Sudan, then Nairobi".into(),
            deadline: datetime!(2024-04-20 18:00 UTC),
        };
        assert!(order.validate().is_ok());
        round_trip(&order);
        assert_eq!(
            serde_json::to_value(&order).unwrap()["scope"],
            "non_essential"
        );
        let nowhere = RelocationOrdered {
            destination: "".into(),
            ..order
        };
        assert_eq!(nowhere.validate().unwrap_err().field, "destination");

        let entry = RollCallEntryAdded {
            person: "p-9".into(),
            agency: Some("wfp".into()),
            duty_station: None,
            dependants: 2,
        };
        assert!(entry.validate().is_ok());
        round_trip(&entry);
        let marked = PersonMarked {
            person: "p-9".into(),
            status: PersonStatus::Missing,
            by: "do.1".into(),
            note: None,
        };
        round_trip(&marked);
        assert!(
            PersonMarked {
                by: "a b".into(),
                ..marked
            }
            .validate()
            .is_err()
        );
        let arrived = PersonArrivedInArea {
            person: "p-10".into(),
            agency: Some("wfp".into()),
            duty_station: Some("SDN-KRT".into()),
            dependants: 1,
            cause: PresenceCause::Clearance,
        };
        assert!(arrived.validate().is_ok());
        round_trip(&arrived);
        assert_eq!(
            serde_json::to_value(&arrived).unwrap()["cause"],
            "clearance"
        );
        let left = PersonLeftArea {
            person: "p-10".into(),
            cause: PresenceCause::Assignment,
        };
        round_trip(&left);
        assert_eq!(
            PersonLeftArea {
                person: "".into(),
                ..left
            }
            .validate()
            .unwrap_err()
            .field,
            "person"
        );
        round_trip(&OrderCompleted { note: None });
        assert_eq!(
            serde_json::to_string(&OrderCompleted { note: None }).unwrap(),
            "{}"
        );
        round_trip(&OrderRescinded {
            reason: "situation calmed".into(),
        });
    }
}
