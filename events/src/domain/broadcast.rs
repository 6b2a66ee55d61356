//! All-agency broadcast events (stream category `broadcast`, one stream per broadcast):
//! issued (with the agencies it goes to), approved by a second duty officer, each delivery
//! attempt and its outcome, acknowledged by agency focal points, re-sent and escalated when
//! unacknowledged, cancelled.
//!
//! An update or a cancellation is a new broadcast that names the original (`updates`,
//! `cancels`): nothing is edited in place (CAP's Update/Cancel).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::MAX_REASON;
use crate::envelope::StreamName;
use crate::validate::{Country, ValidationError, id, id_list, line, non_blank, opt_timestamp};

/// The stream of broadcast `id`.
pub fn stream_for(id: Uuid) -> StreamName {
    // "broadcast" is a valid category (lower-case letters).
    StreamName::new(crate::Category("broadcast".to_owned()), id)
}

/// The id of agency `agency`'s acknowledgement of broadcast `broadcast`: one per broadcast
/// and agency, whoever acknowledges and however often, so the store keeps the first (a
/// retry, a second click, a colleague, a site forwarding it again) and answers the rest by id.
pub fn ack_id(broadcast: Uuid, agency: &str) -> Uuid {
    Uuid::new_v5(&broadcast, format!("ack/{agency}").as_bytes())
}

/// Longest broadcast title.
pub const MAX_TITLE: usize = 200;
/// Longest broadcast body.
pub const MAX_BODY: usize = 20_000;
/// Most agencies one broadcast may name.
pub const MAX_AGENCIES: usize = 200;

/// How urgent a broadcast is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
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

/// Who a broadcast is for. JSON: `"all_agencies"`, `{"country": "SO"}`,
/// `{"agencies": ["wfp", "unicef"]}`, or `"duty_officers"` / `"crisis_managers"` (inside the
/// centre only: shown on the board, never sent to an agency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every agency.
    AllAgencies,
    /// Every agency present in one country.
    Country(Country),
    /// The agencies named, 1 to 200, each once.
    Agencies(Vec<String>),
    /// The centre's duty officers (the board), no agency.
    DutyOfficers,
    /// The centre's crisis managers only, no agency.
    CrisisManagers,
}

impl Audience {
    /// Whether the audience is inside the centre (no agency receives it).
    pub fn is_internal(&self) -> bool {
        matches!(self, Audience::DutyOfficers | Audience::CrisisManagers)
    }
}

/// The rule that issued a broadcast by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Firing {
    /// The rule's id in the rules file.
    pub rule: String,
    /// The rules file's version.
    pub rules_version: u32,
    /// The event that triggered it (also the broadcast event's `causation_id`).
    pub trigger: Uuid,
    /// The trigger's event type.
    pub trigger_type: String,
}

/// A broadcast was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The earlier broadcast this one cancels, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancels: Option<Uuid>,
    /// The agencies it goes to, resolved from the audience when issued (empty for an
    /// internal audience).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Set when a rule issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Firing>,
}

impl BroadcastIssued {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        line("title", &self.title, MAX_TITLE)?;
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
        if self.updates.is_some() && self.cancels.is_some() {
            return Err(ValidationError::new(
                "cancels",
                "a broadcast either updates or cancels another, not both",
            ));
        }
        if !self.recipients.is_empty() {
            id_list("recipients", &self.recipients, 0, MAX_AGENCIES)?;
        }
        if let Some(f) = &self.rule {
            id("rule.rule", &f.rule)?;
            id("rule.trigger_type", &f.trigger_type)?;
        }
        Ok(())
    }

    /// Whether a second duty officer must approve it before it goes out: severity high or
    /// critical, or every agency. Cancellations and rule firings are exempt (stopping a wrong
    /// alert must not wait; a rule was reviewed when its file was).
    pub fn needs_second_person(&self) -> bool {
        self.cancels.is_none()
            && self.rule.is_none()
            && (self.severity >= BroadcastSeverity::High || self.audience == Audience::AllAgencies)
    }
}

/// A second duty officer approved the broadcast (the two-person rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastApproved {
    /// Who approved it (never its issuer).
    pub by: String,
}

impl BroadcastApproved {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)
    }
}

/// A delivery channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A NATS subject.
    Nats,
    /// An HTTP webhook.
    Webhook,
    /// The CAP (Common Alerting Protocol) feed.
    Cap,
}

impl Channel {
    /// The channel's name in JSON and event ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Nats => "nats",
            Channel::Webhook => "webhook",
            Channel::Cap => "cap",
        }
    }
}

/// A delivery attempt was started (claimed): the instance whose append stored it makes the
/// attempt; its outcome is a [`BroadcastDelivered`] or a [`BroadcastDeliveryFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastDeliveryAttempted {
    /// The agency.
    pub agency: String,
    /// How.
    pub channel: Channel,
    /// Round 1 is the first sending, round 2 the re-send to agencies that have not
    /// acknowledged.
    pub round: u32,
    /// Attempt within the round, from 1.
    pub attempt: u32,
}

impl BroadcastDeliveryAttempted {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        if self.attempt == 0 || self.round == 0 {
            return Err(ValidationError::new(
                "attempt",
                "rounds and attempts count from 1",
            ));
        }
        Ok(())
    }
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
    /// Which round (1: first sending, 2: re-send).
    #[serde(default = "first_round")]
    pub round: u32,
}

fn first_round() -> u32 {
    1
}

/// A delivery attempt failed; `gave_up` when it was the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastDeliveryFailed {
    /// The agency.
    pub agency: String,
    /// How.
    pub channel: Channel,
    /// Which round.
    pub round: u32,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// What went wrong (status code, connection error).
    pub error: String,
    /// No further attempt will be made over this channel in this round.
    pub gave_up: bool,
}

impl BroadcastDeliveryFailed {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        non_blank("error", &self.error, MAX_REASON)?;
        if self.attempt == 0 || self.round == 0 {
            return Err(ValidationError::new(
                "attempt",
                "rounds and attempts count from 1",
            ));
        }
        Ok(())
    }
}

/// Agencies that had not acknowledged were sent the broadcast again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastResent {
    /// The agencies sent to again.
    pub agencies: Vec<String>,
}

impl BroadcastResent {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id_list("agencies", &self.agencies, 1, MAX_AGENCIES)
    }
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
    /// The agencies that had not acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agencies: Vec<String>,
}

impl BroadcastEscalated {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)?;
        if !self.agencies.is_empty() {
            id_list("agencies", &self.agencies, 0, MAX_AGENCIES)?;
        }
        Ok(())
    }
}

/// A rule's trigger that would have fired this rule broadcast again, damped: the same rule
/// and area, within the rules' `damp_minutes` of this broadcast's trigger, and no higher
/// level. Recorded on the broadcast that damped it, once per trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastTriggerSuppressed {
    /// The rule.
    pub rule: String,
    /// The event that would have fired it.
    pub trigger: Uuid,
}

impl BroadcastTriggerSuppressed {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("rule", &self.rule)
    }
}

/// The broadcast was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastCancelled {
    /// Why.
    pub reason: String,
    /// The broadcast that announced the cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_broadcast: Option<Uuid>,
}

impl BroadcastCancelled {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

// --- Command bodies that are not events: what `vigil.cmd.broadcast.<name>` reads (and the
// gateway documents); the broadcast service fills in the rest of the event.

/// Body of `issue`: a broadcast as a duty officer issues it (another duty officer approves
/// it). The recipients come from the audience and the reference data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBroadcast {
    /// One line, at most [`MAX_TITLE`] characters.
    pub title: String,
    /// The text, at most [`MAX_BODY`] characters.
    pub body: String,
    /// How urgent.
    pub severity: BroadcastSeverity,
    /// Who it is for.
    pub audience: Audience,
    /// Whether each agency must acknowledge it.
    #[serde(default)]
    pub requires_ack: bool,
    /// By when (RFC 3339, to come).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ack_deadline: Option<OffsetDateTime>,
    /// An exercise, marked as such everywhere.
    #[serde(default)]
    pub exercise: bool,
    /// The broadcast this one updates.
    #[serde(default)]
    pub updates: Option<Uuid>,
}

/// Body of `cancel`'s change: why (sent to the recipients as a notice, unless the broadcast
/// was still awaiting approval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBroadcast {
    /// Why.
    pub reason: String,
}

// --- What the broadcast service answers (`GET /api/v1/broadcasts` and `/{id}`).

/// Where a broadcast is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastStatus {
    /// Waiting for a second duty officer; nothing is sent.
    AwaitingApproval,
    /// Being sent and acknowledged.
    Live,
    /// Withdrawn: nothing more is sent.
    Cancelled,
}

/// One agency's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgencyAck {
    /// The focal point who acknowledged.
    pub by: String,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Seconds from going live to the acknowledgement.
    pub seconds: i64,
}

/// One agency's state in a [`BroadcastView`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BroadcastAgencyState {
    /// Delivered over these channels.
    pub delivered: Vec<Channel>,
    /// Channels given up on, with the last error.
    pub failed: std::collections::BTreeMap<String, String>,
    /// Attempts made, over all channels and rounds.
    pub attempts: u32,
    /// The acknowledgement.
    pub ack: Option<AgencyAck>,
}

/// Every recipient agency, counted: what a focal point learns of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct BroadcastTotals {
    /// Agencies it was sent to.
    pub recipients: usize,
    /// Of them, sent: at least one delivery attempt was made.
    pub sent: usize,
    /// Of them, delivered over some channel (an agency system received it: a receipt over
    /// NATS, a 2xx from its webhook).
    pub delivered: usize,
    /// Of them, acknowledged.
    pub acknowledged: usize,
}

/// A broadcast as `GET /api/v1/broadcasts/{id}` shows it and each item of the list, for one
/// caller (built by the broadcast service).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BroadcastView {
    /// Every recipient agency, counted (a focal point's `recipients` and `agencies` hold
    /// its own agency only).
    pub totals: BroadcastTotals,
    /// The broadcast.
    pub id: Uuid,
    /// What was issued.
    #[serde(flatten)]
    pub issued: BroadcastIssued,
    /// Where it is.
    pub status: BroadcastStatus,
    /// Who issued it.
    pub issued_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The second duty officer.
    pub approved_by: Option<String>,
    /// Per recipient agency.
    pub agencies: std::collections::BTreeMap<String, BroadcastAgencyState>,
    /// Agencies at least one delivery attempt was made to.
    pub sent: usize,
    /// Agencies whose system received it (a receipt over NATS, a 2xx from a webhook).
    pub delivered: usize,
    /// Agencies that acknowledged (a person of the agency).
    pub acknowledged: usize,
    /// Agencies with a channel given up on and not delivered over another.
    pub failed: usize,
    /// Agencies sent it again.
    pub resent_to: Vec<String>,
    /// Agencies silent at the deadline, when escalated.
    pub escalated: Option<Vec<String>>,
    /// Why it was cancelled.
    pub cancelled: Option<String>,
    /// The broadcast that updates it.
    pub superseded_by: Option<Uuid>,
    /// Triggers of its rule damped by it (the broadcast service's flap damping).
    pub suppressed: u64,
    /// Log position of the issue.
    pub position: u64,
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
            cancels: None,
            recipients: vec![],
            rule: None,
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
            round: 1,
        };
        round_trip(&d);
        assert!(BroadcastDelivered { attempt: 0, ..d }.validate().is_err());
        round_trip(&BroadcastAcknowledged {
            agency: "wfp".into(),
            by: "fp.wfp".into(),
        });
        round_trip(&BroadcastEscalated {
            reason: "3 agencies overdue".into(),
            agencies: vec!["wfp".into()],
        });
        round_trip(&BroadcastTriggerSuppressed {
            rule: "level-5-6-to-country".into(),
            trigger: Uuid::from_u128(4),
        });
        round_trip(&BroadcastCancelled {
            reason: "sent in error".into(),
            by_broadcast: Some(Uuid::from_u128(9)),
        });
    }
}
