//! Hostage case events (stream category `hostage`). Only crisis managers see their details.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::incident::Location;
use super::{MAX_REASON, MAX_TEXT};
use crate::validate::{
    Country, ValidationError, count, id, id_list, non_blank, opt_non_blank, timestamp,
};

/// The stream of hostage `id` (the id of the command that created it): `hostage-<id>`.
pub fn stream_for(id: uuid::Uuid) -> crate::StreamName {
    // "hostage" is a valid category (lower-case letters).
    crate::StreamName::new(crate::Category("hostage".to_owned()), id)
}

/// Most persons one hostage case may concern.
pub const MAX_PERSONS: usize = 500;

/// A hostage case was opened from an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostageCaseOpened {
    /// The incident it arose from.
    pub incident_id: Uuid,
    /// Where the persons were taken.
    pub country: Country,
    /// References of the personnel held, 1 to 500, each once.
    pub persons: Vec<String>,
    /// Who holds them, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captors: Option<String>,
    /// Where they are believed to be held, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl HostageCaseOpened {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id_list("persons", &self.persons, 1, MAX_PERSONS)?;
        opt_non_blank("captors", self.captors.as_deref(), MAX_REASON)?;
        self.location
            .as_ref()
            .map_or(Ok(()), |l| l.validate().map_err(|e| e.at("location")))
    }
}

/// Proof that a person was alive at a given time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofOfLifeReceived {
    /// The person.
    pub person: String,
    /// When the proof shows them alive.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the proof is.
    pub note: String,
}

impl ProofOfLifeReceived {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        timestamp("at", self.at)?;
        non_blank("note", &self.note, MAX_TEXT)
    }
}

/// A contact with the captors or intermediaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NegotiationContactLogged {
    /// When the contact took place.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What was said.
    pub summary: String,
}

impl NegotiationContactLogged {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        timestamp("at", self.at)?;
        non_blank("summary", &self.summary, MAX_TEXT)
    }
}

/// A person was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostageReleased {
    /// The person.
    pub person: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl HostageReleased {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        timestamp("at", self.at)
    }
}

/// A person died in captivity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostageDeceased {
    /// The person.
    pub person: String,
    /// When (as best known).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl HostageDeceased {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        timestamp("at", self.at)
    }
}

/// What became of a person when the case closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostageOutcome {
    /// Released.
    Released,
    /// Died.
    Deceased,
    /// Anything else (escaped, unaccounted for, ...); needs a note.
    Other,
}

/// The final account of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonAccount {
    /// The person.
    pub person: String,
    /// What became of them.
    pub status: HostageOutcome,
    /// Details; required when the status is `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The case was closed, with an account of every person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostageCaseClosed {
    /// How it ended.
    pub outcome: String,
    /// One entry per person, 1 to 500, each person once.
    pub accounting: Vec<PersonAccount>,
}

impl HostageCaseClosed {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("outcome", &self.outcome, MAX_REASON)?;
        count("accounting", self.accounting.len(), 1, MAX_PERSONS)?;
        for (i, a) in self.accounting.iter().enumerate() {
            let at = format!("accounting[{i}]");
            id("person", &a.person).map_err(|e| e.at(&at))?;
            if self.accounting[..i].iter().any(|b| b.person == a.person) {
                return Err(ValidationError::new(
                    at,
                    "this person is accounted for twice",
                ));
            }
            opt_non_blank("note", a.note.as_deref(), MAX_REASON).map_err(|e| e.at(&at))?;
            if a.status == HostageOutcome::Other && a.note.is_none() {
                return Err(ValidationError::new(
                    format!("{at}.note"),
                    "is required when the status is other",
                ));
            }
        }
        Ok(())
    }
}

// --- Command bodies that are not events: what `vigil.cmd.hostage.<name>` reads (and the
// gateway documents), checked against the case by the hostage service.

/// Body of `release_many`: several persons of the case released at the same time (70 people
/// freed together need one request, not 70).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMany {
    /// The persons, 1 to [`MAX_PERSONS`], each once, every one still held.
    pub persons: Vec<String>,
    /// When they were released.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Body of `proof_of_life_many`: one proof showing several persons alive (a group video).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofOfLifeMany {
    /// The persons, 1 to [`MAX_PERSONS`], each once, every one still held.
    pub persons: Vec<String>,
    /// When the proof shows them alive.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the proof is.
    pub note: String,
}

// --- What the hostage service's list answers (`GET /api/v1/hostage-cases`).

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Opened, not yet closed.
    Open,
    /// Closed with an account of every person; no more changes.
    Closed,
}

/// What everyone allowed to list hostage cases sees of one: no person reference, no captors,
/// no location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseSummary {
    /// The case's id.
    pub case: Uuid,
    /// Where the persons were taken.
    pub country: Country,
    /// The incident it arose from.
    pub incident_id: Uuid,
    /// How many are still held.
    pub persons_held: usize,
    /// How many have been released (a wall screen says "70 released, 1 deceased").
    pub persons_released: usize,
    /// How many died in captivity.
    pub persons_deceased: usize,
    /// How many the case concerns.
    pub persons_total: usize,
    /// When the centre recorded the opening.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Whole days from the opening to now, or to the closure.
    pub days_held: u64,
    /// Open or closed.
    pub status: CaseStatus,
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
    fn hostage_events_are_checked_and_round_trip() {
        let at = datetime!(2024-06-01 08:00 UTC);
        let opened = HostageCaseOpened {
            incident_id: Uuid::from_u128(1),
            country: Country::parse("ML").unwrap(),
            persons: vec!["p-1".into(), "p-2".into()],
            captors: Some("unknown armed group".into()),
            location: Some(Location {
                lat: 16.77,
                lon: -3.0,
                accuracy_m: Some(5000.0),
            }),
        };
        assert!(opened.validate().is_ok());
        round_trip(&opened);
        let none = HostageCaseOpened {
            persons: vec![],
            ..opened.clone()
        };
        assert_eq!(
            none.validate().unwrap_err().to_string(),
            "persons: must have 1 to 500 entries, got 0"
        );
        let twice = HostageCaseOpened {
            persons: vec!["p".into(), "p".into()],
            ..opened
        };
        assert_eq!(twice.validate().unwrap_err().field, "persons[1]");

        let pol = ProofOfLifeReceived {
            person: "p-1".into(),
            at,
            note: "video".into(),
        };
        assert!(pol.validate().is_ok());
        round_trip(&pol);
        let contact = NegotiationContactLogged {
            at,
            summary: "call via elders".into(),
        };
        round_trip(&contact);
        assert!(
            NegotiationContactLogged {
                at,
                summary: "".into()
            }
            .validate()
            .is_err()
        );
        let released = HostageReleased {
            person: "p-1".into(),
            at,
        };
        round_trip(&released);
        let deceased = HostageDeceased {
            person: "p-2".into(),
            at,
        };
        round_trip(&deceased);

        let acct = |person: &str, status, note: Option<&str>| PersonAccount {
            person: person.into(),
            status,
            note: note.map(Into::into),
        };
        let closed = HostageCaseClosed {
            outcome: "one released, one died".into(),
            accounting: vec![
                acct("p-1", HostageOutcome::Released, None),
                acct("p-2", HostageOutcome::Deceased, None),
            ],
        };
        assert!(closed.validate().is_ok());
        round_trip(&closed);
        let other = HostageCaseClosed {
            accounting: vec![acct("p-1", HostageOutcome::Other, None)],
            ..closed.clone()
        };
        assert_eq!(
            other.validate().unwrap_err().to_string(),
            "accounting[0].note: is required when the status is other"
        );
        let dup = HostageCaseClosed {
            accounting: vec![acct("p-1", HostageOutcome::Released, None); 2],
            ..closed
        };
        assert_eq!(dup.validate().unwrap_err().field, "accounting[1]");
    }
}
