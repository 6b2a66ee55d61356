//! All-agency broadcast events (stream category `broadcast`): issued, delivered over each
//! channel, acknowledged by agency focal points, escalated when unacknowledged, cancelled.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::MAX_REASON;
use crate::validate::{Country, ValidationError, id, id_list, non_blank, opt_timestamp};

/// Longest broadcast title.
pub const MAX_TITLE: usize = 200;
/// Longest broadcast body.
pub const MAX_BODY: usize = 20_000;
/// Most agencies one broadcast may name.
pub const MAX_AGENCIES: usize = 200;

/// How urgent a broadcast is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastSeverity {
    /// For information.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical: life at risk now.
    Critical,
}

/// Who a broadcast is for. JSON: `"all_agencies"`, `{"country": "SO"}` or
/// `{"agencies": ["wfp", "unicef"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every agency.
    AllAgencies,
    /// Every agency present in one country.
    Country(Country),
    /// The agencies named, 1 to 200, each once.
    Agencies(Vec<String>),
}

/// A broadcast was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastIssued {
    /// One line, at most 200 characters.
    pub title: String,
    /// The message, at most 20 000 characters.
    pub body: String,
    /// How urgent.
    pub severity: BroadcastSeverity,
    /// Who it is for.
    pub audience: Audience,
    /// Whether each agency must acknowledge it.
    pub requires_ack: bool,
    /// By when acknowledgements are due (only with `requires_ack`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ack_deadline: Option<OffsetDateTime>,
    /// An exercise, not a real alert.
    pub exercise: bool,
    /// The earlier broadcast this one updates, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Uuid>,
}

impl BroadcastIssued {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("title", &self.title, MAX_TITLE)?;
        non_blank("body", &self.body, MAX_BODY)?;
        if let Audience::Agencies(list) = &self.audience {
            id_list("audience.agencies", list, 1, MAX_AGENCIES)?;
        }
        opt_timestamp("ack_deadline", self.ack_deadline)?;
        if self.ack_deadline.is_some() && !self.requires_ack {
            return Err(ValidationError::new(
                "ack_deadline",
                "is set but requires_ack is false",
            ));
        }
        Ok(())
    }
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A NATS subject.
    Nats,
    /// An HTTP webhook.
    Webhook,
    /// The CAP (Common Alerting Protocol) feed.
    Cap,
}

/// The broadcast reached an agency over a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastDelivered {
    /// The agency.
    pub agency: String,
    /// How.
    pub channel: Channel,
    /// Which attempt succeeded, from 1.
    pub attempt: u32,
}

impl BroadcastDelivered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        if self.attempt == 0 {
            return Err(ValidationError::new("attempt", "attempts count from 1"));
        }
        Ok(())
    }
}

/// An agency focal point acknowledged the broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastAcknowledged {
    /// The agency.
    pub agency: String,
    /// The focal point who acknowledged.
    pub by: String,
}

impl BroadcastAcknowledged {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        id("by", &self.by)
    }
}

/// The broadcast was escalated (e.g. acknowledgements overdue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastEscalated {
    /// Why.
    pub reason: String,
}

impl BroadcastEscalated {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

/// The broadcast was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastCancelled {
    /// Why.
    pub reason: String,
}

impl BroadcastCancelled {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;
    use std::fmt::Debug;
    use time::macros::datetime;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(e: &T) {
        let back: T = serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }

    #[test]
    fn broadcast_events_are_checked_and_round_trip() {
        let b = BroadcastIssued {
            title: "Curfew from 18:00".into(),
            body: "All staff to remain in residences.".into(),
            severity: BroadcastSeverity::High,
            audience: Audience::Country(Country::parse("HT").unwrap()),
            requires_ack: true,
            ack_deadline: Some(datetime!(2024-03-01 17:00 UTC)),
            exercise: false,
            updates: None,
        };
        assert!(b.validate().is_ok());
        round_trip(&b);
        assert_eq!(
            serde_json::to_value(&b).unwrap()["audience"],
            json!({"country": "HT"})
        );
        let all = BroadcastIssued {
            audience: Audience::AllAgencies,
            ..b.clone()
        };
        assert_eq!(
            serde_json::to_value(&all).unwrap()["audience"],
            "all_agencies"
        );
        round_trip(&all);
        let named = BroadcastIssued {
            audience: Audience::Agencies(vec!["wfp".into(), "unicef".into()]),
            updates: Some(Uuid::from_u128(3)),
            ..b.clone()
        };
        assert!(named.validate().is_ok());
        round_trip(&named);
        let nobody = BroadcastIssued {
            audience: Audience::Agencies(vec![]),
            ..b.clone()
        };
        assert_eq!(
            nobody.validate().unwrap_err().to_string(),
            "audience.agencies: must have 1 to 200 entries, got 0"
        );
        let long = BroadcastIssued {
            title: "t".repeat(201),
            ..b.clone()
        };
        assert_eq!(long.validate().unwrap_err().field, "title");
        let no_ack = BroadcastIssued {
            requires_ack: false,
            ..b
        };
        assert_eq!(no_ack.validate().unwrap_err().field, "ack_deadline");

        let d = BroadcastDelivered {
            agency: "wfp".into(),
            channel: Channel::Cap,
            attempt: 1,
        };
        round_trip(&d);
        assert!(BroadcastDelivered { attempt: 0, ..d }.validate().is_err());
        round_trip(&BroadcastAcknowledged {
            agency: "wfp".into(),
            by: "fp.wfp".into(),
        });
        round_trip(&BroadcastEscalated {
            reason: "3 agencies overdue".into(),
        });
        round_trip(&BroadcastCancelled {
            reason: "sent in error".into(),
        });
    }
}
