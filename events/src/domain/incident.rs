//! Incident events (stream category `incident`): a flash report from the field, its updates,
//! verification, escalation into a case, and closure.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::MAX_REASON;
use crate::validate::{
    self, Country, LatLon, Severity, ValidationError, id, line, non_blank, opt_id, opt_line,
    opt_non_blank,
};

/// Longest incident title.
pub const MAX_TITLE: usize = 200;
/// Longest incident description.
pub const MAX_DESCRIPTION: usize = 10_000;
/// How long before it is reported an incident may have happened. A flash report is news: a
/// phone that was out of reach for a field trip still flushes its queue well within it;
/// older events are history, entered through `vigil import`, not reported.
pub const MAX_REPORT_AGE: time::Duration = time::Duration::days(30);

/// The stream of incident `id` (the client's UUID of the report): `incident-<id>`.
pub fn stream_for(id: Uuid) -> crate::StreamName {
    // "incident" is a valid category (lower-case letters).
    crate::StreamName::new(crate::Category("incident".to_owned()), id)
}

/// What kind of incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentCategory {
    /// Armed conflict.
    ArmedConflict,
    /// Terrorism.
    Terrorism,
    /// Crime.
    Crime,
    /// Civil unrest.
    CivilUnrest,
    /// Natural or industrial hazard.
    Hazard,
    /// Road traffic accident.
    RoadTraffic,
    /// Anything else.
    Other,
}

/// Where something happened: a point and, when known, how accurate it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
    /// Accuracy radius in metres, 0 to 100 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

impl Location {
    /// Checks the coordinates and the accuracy.
    pub fn validate(&self) -> Result<(), ValidationError> {
        LatLon {
            lat: self.lat,
            lon: self.lon,
        }
        .validate()?;
        self.accuracy_m
            .map_or(Ok(()), |a| validate::accuracy_m("accuracy_m", a))
    }
}

/// People killed and injured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Casualties {
    /// Killed.
    pub killed: u32,
    /// Injured.
    pub injured: u32,
}

/// A flash report from the field: the incident exists from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentReported {
    /// Where it happened.
    pub country: Country,
    /// What kind of incident.
    pub category: IncidentCategory,
    /// How severe, 1 to 5.
    pub severity: Severity,
    /// One line, at most 200 characters.
    pub title: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Where exactly, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The duty station concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_station: Option<String>,
    /// Free text, at most 10 000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Casualties, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casualties: Option<Casualties>,
    /// The user who reported it.
    pub reporter: String,
}

impl IncidentReported {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        line("title", &self.title, MAX_TITLE)?;
        validate::timestamp("occurred_at", self.occurred_at)?;
        if let Some(l) = &self.location {
            l.validate().map_err(|e| e.at("location"))?;
        }
        opt_id("duty_station", self.duty_station.as_deref())?;
        opt_non_blank("description", self.description.as_deref(), MAX_DESCRIPTION)?;
        id("reporter", &self.reporter)
    }
}

/// New details of an incident: only the fields that changed, and/or a note.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdated {
    /// Corrected country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
    /// Corrected category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<IncidentCategory>,
    /// New severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Corrected time of the incident.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub occurred_at: Option<OffsetDateTime>,
    /// New or better location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Corrected duty station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_station: Option<String>,
    /// New description (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New casualty figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casualties: Option<Casualties>,
    /// What changed and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl IncidentUpdated {
    /// Checks the fields present, and that something is present.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if *self == Self::default() {
            return Err(ValidationError::new(
                "note",
                "an update must change a field or add a note",
            ));
        }
        opt_line("title", self.title.as_deref(), MAX_TITLE)?;
        validate::opt_timestamp("occurred_at", self.occurred_at)?;
        if let Some(l) = &self.location {
            l.validate().map_err(|e| e.at("location"))?;
        }
        opt_id("duty_station", self.duty_station.as_deref())?;
        opt_non_blank("description", self.description.as_deref(), MAX_DESCRIPTION)?;
        opt_non_blank("note", self.note.as_deref(), MAX_REASON)
    }
}

/// An officer confirmed the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentVerified {
    /// The user who verified it.
    pub by: String,
    /// How it was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl IncidentVerified {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)?;
        opt_non_blank("note", self.note.as_deref(), MAX_REASON)
    }
}

/// What an incident can be escalated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscalationKind {
    /// A hostage case (`hostage-<id>`).
    HostageCase,
    /// A surge deployment (`surge-<id>`).
    Surge,
    /// A relocation or evacuation order (`relocation-<id>`).
    RelocationOrder,
}

impl EscalationKind {
    /// The stream category of the target.
    pub fn category(self) -> &'static str {
        match self {
            Self::HostageCase => "hostage",
            Self::Surge => "surge",
            Self::RelocationOrder => "relocation",
        }
    }
}

/// The case an incident was escalated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// What kind of case.
    pub kind: EscalationKind,
    /// The id of its stream.
    pub id: Uuid,
}

/// The incident was escalated into a hostage case, a surge or a relocation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentEscalated {
    /// The case it was escalated into.
    pub to: Escalation,
    /// Why.
    pub reason: String,
}

impl IncidentEscalated {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

/// The incident is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentClosed {
    /// Why.
    pub reason: String,
}

impl IncidentClosed {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

// --- What the incidents service answers (`GET /api/v1/incidents` and `/{id}`).

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Reported, not yet verified.
    Reported,
    /// Confirmed by a duty officer.
    Verified,
    /// Closed; no more changes.
    Closed,
}

/// An incident as its stream tells it: what `GET /api/v1/incidents/{id}` shows and each item
/// of the list. The incidents service folds it (its aggregate is this record with the rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    /// The client's UUID of the report (the stream is `incident-<id>`).
    pub id: Uuid,
    /// Where it happened.
    pub country: Country,
    /// What kind.
    pub category: IncidentCategory,
    /// 1 to 5.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Where exactly, if known.
    pub location: Option<Location>,
    /// The duty station concerned.
    pub duty_station: Option<String>,
    /// Narrative.
    pub description: Option<String>,
    /// UN casualties.
    pub casualties: Option<Casualties>,
    /// Who reported it.
    pub reporter: String,
    /// Where it is in its life.
    pub status: IncidentStatus,
    /// Who verified it.
    pub verified_by: Option<String>,
    /// Cases it was escalated into.
    pub escalations: Vec<Escalation>,
    /// Why it was closed.
    pub closed_reason: Option<String>,
    /// Log position of the report.
    pub reported_position: u64,
    /// When the centre received the report.
    #[serde(with = "time::serde::rfc3339")]
    pub reported_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> serde_json::Value {
        json!({
            "country": "SO", "category": "armed_conflict", "severity": 4,
            "title": "Exchange of fire near the compound", "occurred_at": "2024-05-01T10:15:00Z",
            "location": {"lat": 2.0469, "lon": 45.3182, "accuracy_m": 50.0},
            "duty_station": "SOM-MGQ", "description": "Gunfire heard for 20 minutes.",
            "casualties": {"killed": 0, "injured": 2}, "reporter": "fso.ali"
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_flash_report_is_checked() {
        let r: IncidentReported = parse(report());
        assert!(r.validate().is_ok());
        let mut long = r.clone();
        long.title = "x".repeat(201);
        assert_eq!(
            long.validate().unwrap_err().to_string(),
            "title: must be at most 200 characters, got 201"
        );
        let mut far = r.clone();
        far.location = Some(Location {
            lat: 91.0,
            lon: 0.0,
            accuracy_m: None,
        });
        assert_eq!(
            far.validate().unwrap_err().to_string(),
            "location.lat: 91 is out of range (-90 to 90 degrees)"
        );
        let mut nan = r.clone();
        nan.location = Some(Location {
            lat: 0.0,
            lon: 0.0,
            accuracy_m: Some(f64::NAN),
        });
        assert_eq!(nan.validate().unwrap_err().field, "location.accuracy_m");
        for (field, bad) in [
            ("country", json!("XX")),
            ("country", json!("so")),
            ("severity", json!(0)),
            ("category", json!("war")),
            ("occurred_at", json!("yesterday")),
        ] {
            let mut v = report();
            v[field] = bad;
            let e = serde_json::from_value::<IncidentReported>(v)
                .unwrap_err()
                .to_string();
            assert!(!e.is_empty());
        }
        let mut v = report();
        v["extra"] = json!(1);
        assert!(serde_json::from_value::<IncidentReported>(v).is_err());
    }

    #[test]
    fn incident_events_round_trip() {
        let r: IncidentReported = parse(report());
        assert_eq!(
            parse::<IncidentReported>(serde_json::to_value(&r).unwrap()),
            r
        );
        let minimal = json!({"country": "AF", "category": "crime", "severity": 1, "title": "t",
            "occurred_at": "2024-05-01T10:15:00.5+04:30", "reporter": "u1"});
        let m: IncidentReported = parse(minimal.clone());
        assert_eq!(serde_json::to_value(&m).unwrap()["title"], minimal["title"]);
        assert_eq!(
            parse::<IncidentReported>(serde_json::to_value(&m).unwrap()),
            m
        );

        let u = IncidentUpdated {
            severity: Some(Severity::new(5).unwrap()),
            note: Some("worse".into()),
            ..Default::default()
        };
        assert!(u.validate().is_ok());
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"severity": 5, "note": "worse"})
        );
        assert_eq!(
            parse::<IncidentUpdated>(serde_json::to_value(&u).unwrap()),
            u
        );
        assert!(IncidentUpdated::default().validate().is_err());

        let v = IncidentVerified {
            by: "duty.officer".into(),
            note: None,
        };
        assert_eq!(
            parse::<IncidentVerified>(serde_json::to_value(&v).unwrap()),
            v
        );
        let e = IncidentEscalated {
            to: Escalation {
                kind: EscalationKind::HostageCase,
                id: Uuid::from_u128(7),
            },
            reason: "two staff abducted".into(),
        };
        assert!(e.validate().is_ok());
        assert_eq!(
            serde_json::to_value(&e).unwrap()["to"]["kind"],
            "hostage_case"
        );
        assert_eq!(
            parse::<IncidentEscalated>(serde_json::to_value(&e).unwrap()),
            e
        );
        let c = IncidentClosed {
            reason: "resolved".into(),
        };
        assert_eq!(
            parse::<IncidentClosed>(serde_json::to_value(&c).unwrap()),
            c
        );
        assert_eq!(
            IncidentClosed { reason: " ".into() }
                .validate()
                .unwrap_err()
                .field,
            "reason"
        );
    }
}
