//! Words on the board: timeline texts, severities as text, names of categories and kinds.
//!
//! Promise: no text written here contains a person's name or reference — no reporter, no user
//! who verified, approved or issued, no hostage, no officer, no one on a roll call, no
//! free-text reason or description (which may name people). Titles, areas, duty stations,
//! destinations, agency ids and rule ids are places, organisations and things, and are shown.

use events::domain::broadcast::BroadcastSeverity;
use events::domain::incident::{EscalationKind, IncidentCategory};
use events::domain::relocation::{OrderKind, Scope};
use events::validate::{Country, SecurityLevel, Severity};
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::{Broadcast, Incident, Kind, Order, Surge, SurgeStatus, Urgency};

/// A timeline entry before it is stamped with the event's position and time.
pub(super) type Note = (Kind, Option<Country>, Urgency, String);

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Incident => "incident",
            Kind::Level => "level",
            Kind::Hostage => "hostage",
            Kind::Surge => "surge",
            Kind::Order => "order",
            Kind::Broadcast => "broadcast",
        }
    }
}

impl Urgency {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Urgency::Info => "info",
            Urgency::Low => "low",
            Urgency::Medium => "medium",
            Urgency::High => "high",
            Urgency::Critical => "critical",
        }
    }

    /// Incident severity 1–5: 1 and 2 low, 3 medium, 4 high, 5 critical.
    fn of_incident(s: Severity) -> Self {
        match s.get() {
            5.. => Urgency::Critical,
            4 => Urgency::High,
            3 => Urgency::Medium,
            _ => Urgency::Low,
        }
    }

    /// Security level 1–6: 6 critical, 5 high, 4 medium, 3 low, 1 and 2 info.
    fn of_level(l: SecurityLevel) -> Self {
        match l {
            SecurityLevel::Extreme => Urgency::Critical,
            SecurityLevel::High => Urgency::High,
            SecurityLevel::Substantial => Urgency::Medium,
            SecurityLevel::Moderate => Urgency::Low,
            SecurityLevel::Low | SecurityLevel::Minimal => Urgency::Info,
        }
    }

    /// A broadcast's own severity, word for word.
    pub(super) fn of_broadcast(s: BroadcastSeverity) -> Self {
        match s {
            BroadcastSeverity::Info => Urgency::Info,
            BroadcastSeverity::Low => Urgency::Low,
            BroadcastSeverity::Medium => Urgency::Medium,
            BroadcastSeverity::High => Urgency::High,
            BroadcastSeverity::Critical => Urgency::Critical,
        }
    }
}

/// The wire name of an incident category (as in the events).
pub(super) fn category_code(c: IncidentCategory) -> &'static str {
    match c {
        IncidentCategory::ArmedConflict => "armed_conflict",
        IncidentCategory::Terrorism => "terrorism",
        IncidentCategory::Crime => "crime",
        IncidentCategory::CivilUnrest => "civil_unrest",
        IncidentCategory::Hazard => "hazard",
        IncidentCategory::RoadTraffic => "road_traffic",
        IncidentCategory::Other => "other",
    }
}

fn category_words(c: IncidentCategory) -> &'static str {
    match c {
        IncidentCategory::ArmedConflict => "armed conflict",
        IncidentCategory::Terrorism => "terrorism",
        IncidentCategory::Crime => "crime",
        IncidentCategory::CivilUnrest => "civil unrest",
        IncidentCategory::Hazard => "hazard",
        IncidentCategory::RoadTraffic => "road traffic",
        IncidentCategory::Other => "other",
    }
}

pub(super) fn order_kind_code(k: OrderKind) -> &'static str {
    match k {
        OrderKind::Relocation => "relocation",
        OrderKind::Evacuation => "evacuation",
    }
}

fn order_kind_word(k: OrderKind) -> &'static str {
    match k {
        OrderKind::Relocation => "Relocation",
        OrderKind::Evacuation => "Evacuation",
    }
}

pub(super) fn scope_code(s: Scope) -> &'static str {
    match s {
        Scope::AllPersonnel => "all_personnel",
        Scope::NonEssential => "non_essential",
        Scope::Dependants => "dependants",
    }
}

fn scope_words(s: Scope) -> &'static str {
    match s {
        Scope::AllPersonnel => "all personnel",
        Scope::NonEssential => "non-essential personnel",
        Scope::Dependants => "dependants",
    }
}

pub(super) fn surge_status_code(s: SurgeStatus) -> &'static str {
    match s {
        SurgeStatus::Requested => "requested",
        SurgeStatus::Approved => "approved",
        SurgeStatus::Deployed => "deployed",
    }
}

/// `2026-11-28 18:00 UTC`: a time as a person reads it on a wall.
fn when(t: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "an unreadable time".to_owned())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(super) fn incident_reported(i: &Incident) -> Note {
    let text = format!(
        "Incident reported in {}: {} (severity {}, {})",
        i.country,
        i.title,
        i.severity,
        category_words(i.category)
    );
    let urgency = Urgency::of_incident(i.severity);
    (Kind::Incident, Some(i.country), urgency, text)
}

pub(super) fn incident_verified(i: &Incident) -> Note {
    let text = format!("Incident verified in {}: {}", i.country, i.title);
    let urgency = Urgency::of_incident(i.severity);
    (Kind::Incident, Some(i.country), urgency, text)
}

pub(super) fn incident_escalated(i: &Incident, to: EscalationKind) -> Note {
    let to = match to {
        EscalationKind::HostageCase => "a hostage case",
        EscalationKind::Surge => "a surge",
        EscalationKind::RelocationOrder => "a relocation order",
    };
    let text = format!("Incident in {} escalated to {to}: {}", i.country, i.title);
    (Kind::Incident, Some(i.country), Urgency::High, text)
}

pub(super) fn incident_closed(i: &Incident) -> Note {
    let text = format!("Incident closed in {}: {}", i.country, i.title);
    (Kind::Incident, Some(i.country), Urgency::Info, text)
}

pub(super) fn level_set(
    area: &str,
    country: Country,
    level: SecurityLevel,
    previous: Option<SecurityLevel>,
) -> Note {
    let change = match previous {
        Some(p) if p < level => format!(" (up from {})", p.get()),
        Some(p) if p > level => format!(" (down from {})", p.get()),
        _ => String::new(),
    };
    let text = format!("Level {level} set for area {area}, {country}{change}");
    (Kind::Level, Some(country), Urgency::of_level(level), text)
}

pub(super) fn hostage_opened(country: Country, held: u64) -> Note {
    let text = format!(
        "Hostage case opened in {country}: {} held",
        plural(held, "person", "persons")
    );
    (Kind::Hostage, Some(country), Urgency::Critical, text)
}

pub(super) fn hostage_released(country: Country, still: u64) -> Note {
    let text = format!(
        "Hostage released in {country}: {} still held in this case",
        plural(still, "person", "persons")
    );
    (Kind::Hostage, Some(country), Urgency::High, text)
}

pub(super) fn hostage_closed(country: Country) -> Note {
    let text = format!("Hostage case closed in {country}");
    (Kind::Hostage, Some(country), Urgency::Medium, text)
}

pub(super) fn surge_requested(s: &Surge) -> Note {
    let text = format!(
        "Surge requested for {}, {}: {} needed",
        s.duty_station,
        s.country,
        plural(u64::from(s.officers_needed), "officer", "officers")
    );
    (Kind::Surge, Some(s.country), Urgency::High, text)
}

pub(super) fn surge_deployed(s: &Surge) -> Note {
    let text = format!(
        "Surge deployed to {}, {}: {} of {} officers assigned",
        s.duty_station, s.country, s.officers_assigned, s.officers_needed
    );
    (Kind::Surge, Some(s.country), Urgency::Medium, text)
}

pub(super) fn surge_cancelled(s: &Surge) -> Note {
    let text = format!(
        "Surge cancelled for {}, {}: {} free again",
        s.duty_station,
        s.country,
        plural(s.officers_assigned, "officer", "officers")
    );
    (Kind::Surge, Some(s.country), Urgency::Medium, text)
}

pub(super) fn order_issued(o: &Order) -> Note {
    let place = match (&o.area, &o.duty_station) {
        (Some(area), _) => format!(" (area {area})"),
        (None, Some(station)) => format!(" ({station})"),
        (None, None) => String::new(),
    };
    let text = format!(
        "{} ordered in {}{place}: {} to {} by {}",
        order_kind_word(o.kind),
        o.country,
        scope_words(o.scope),
        o.destination,
        when(o.deadline)
    );
    let urgency = match o.kind {
        OrderKind::Evacuation => Urgency::Critical,
        OrderKind::Relocation => Urgency::High,
    };
    (Kind::Order, Some(o.country), urgency, text)
}

pub(super) fn order_ended(o: &Order, completed: bool) -> Note {
    let text = if completed {
        format!(
            "{} order completed in {}: {} of {} accounted for",
            order_kind_word(o.kind),
            o.country,
            o.accounted,
            o.total()
        )
    } else {
        format!(
            "{} order rescinded in {}",
            order_kind_word(o.kind),
            o.country
        )
    };
    (Kind::Order, Some(o.country), Urgency::Info, text)
}

/// A broadcast's timeline note: `EXERCISE: ` in front of everything said about an exercise,
/// so that no one reads an exercise as a real alert.
fn broadcast_note(b: &Broadcast, urgency: Urgency, text: String) -> Note {
    let text = if b.exercise {
        format!("EXERCISE: {text}")
    } else {
        text
    };
    (Kind::Broadcast, b.country, urgency, text)
}

pub(super) fn broadcast_issued(b: &Broadcast) -> Note {
    let what = if b.internal {
        "Internal broadcast"
    } else {
        "Broadcast"
    };
    // A rule's id names a rule, not a person.
    let by = b
        .rule
        .as_ref()
        .map_or(String::new(), |r| format!(" by rule {r}"));
    let waiting = if b.needs_approval {
        ", awaiting approval"
    } else {
        ""
    };
    let text = format!("{what} issued{by}{waiting}: {}", b.title);
    broadcast_note(b, Urgency::of_broadcast(b.severity), text)
}

/// Never names the approver: the timeline goes to the wall screen too.
pub(super) fn broadcast_approved(b: &Broadcast) -> Note {
    let text = format!("Broadcast approved by a second duty officer: {}", b.title);
    broadcast_note(b, Urgency::of_broadcast(b.severity), text)
}

/// An agency id names an organisation, not a person.
pub(super) fn broadcast_not_delivered(b: &Broadcast, agency: &str) -> Note {
    let text = format!("Broadcast not delivered to {agency}: {}", b.title);
    broadcast_note(b, Urgency::High, text)
}

pub(super) fn broadcast_escalated(b: &Broadcast) -> Note {
    let text = format!(
        "Broadcast escalated: {} ({} of {} acknowledged)",
        b.title,
        b.acked,
        b.total()
    );
    broadcast_note(b, Urgency::High, text)
}

pub(super) fn broadcast_cancelled(b: &Broadcast) -> Note {
    let text = format!("Broadcast cancelled: {}", b.title);
    broadcast_note(b, Urgency::Info, text)
}
