//! The security level of one area: pure decide and apply over the area's `level` stream, with
//! the area's reference record (its `area` stream) for its country. No I/O, no clock.
//!
//! A level is set by a duty officer with a reason; setting the level it already has is
//! allowed (it confirms the level, with a new reason). A level change by itself triggers
//! nothing here: broadcast rules read it from the log.

use events::RecordedEvent;
use events::codec::Decoded;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::area::AreaRegistered;
use events::domain::level::AreaSecurityLevelSet;
use events::validate::SecurityLevel;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Body of `set` (`PUT /api/v1/areas/{area}/level`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLevel {
    /// The area's id.
    pub area: String,
    /// 1 Minimal … 6 Extreme.
    pub level: SecurityLevel,
    /// Why.
    pub reason: String,
}

/// One entry of an area's level history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelEntry {
    /// The level set.
    pub level: SecurityLevel,
    /// Its name (`High`).
    pub name: String,
    /// The level before.
    pub previous_level: Option<SecurityLevel>,
    /// Why.
    pub reason: String,
    /// Who set it.
    pub set_by: Option<String>,
    /// When the centre recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub set_at: OffsetDateTime,
    /// Its log position.
    pub position: u64,
}

/// An area's levels, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every level set, oldest first.
    pub entries: Vec<LevelEntry>,
}

impl History {
    /// Folds the area's `level` stream.
    pub fn fold(events: &[RecordedEvent]) -> History {
        let entries = events
            .iter()
            .filter_map(|e| match DomainEvent::decode(e) {
                Decoded::Known(DomainEvent::AreaSecurityLevelSet(s)) => Some(LevelEntry {
                    level: s.level,
                    name: s.level.name().to_owned(),
                    previous_level: s.previous_level,
                    reason: s.reason,
                    set_by: e.meta.actor.clone(),
                    set_at: e.recorded_at,
                    position: e.position,
                }),
                _ => None,
            })
            .collect();
        History { entries }
    }

    /// The level now, if one was ever set.
    pub fn current(&self) -> Option<SecurityLevel> {
        self.entries.last().map(|e| e.level)
    }
}

/// The area's latest reference record from its `area` stream.
pub fn registration(events: &[RecordedEvent]) -> Option<AreaRegistered> {
    events
        .iter()
        .filter_map(|e| match DomainEvent::decode(e) {
            Decoded::Known(DomainEvent::AreaRegistered(a)) => Some(a),
            _ => None,
        })
        .next_back()
}

fn unknown_area(area: &str) -> Refusal {
    Refusal::not_found(format!(
        "no area {:?} that you can see; areas come from the reference file (vigil import)",
        area.chars().take(64).collect::<String>()
    ))
}

/// Decides a `set`: the event to append, or why not.
pub fn decide(
    area: Option<&AreaRegistered>,
    history: &History,
    actor: &Actor,
    cmd: SetLevel,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::LEVEL_SET, "set security levels")?;
    let area = area
        .filter(|a| actor.covers(a.country))
        .ok_or_else(|| unknown_area(&cmd.area))?;
    let event: DomainEvent = AreaSecurityLevelSet {
        area: area.area.clone(),
        country: area.country,
        level: cmd.level,
        reason: cmd.reason,
        previous_level: history.current(),
    }
    .into();
    event.validate()?;
    Ok(vec![event])
}

/// Checks that `actor` may read the history of `area`.
pub fn may_read(area: Option<&AreaRegistered>, actor: &Actor, asked: &str) -> Result<(), Refusal> {
    actor.may(policy::LEVEL_READ, "read security levels")?;
    match area {
        Some(a) if actor.covers(a.country) => Ok(()),
        _ => Err(unknown_area(asked)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::command::{RefusalCode, Role};
    use events::validate::Country;
    use events::{Meta, RecordedEvent};
    use uuid::Uuid;

    fn actor(role: Role, scope: Option<&str>) -> Actor {
        Actor {
            user: "u".into(),
            role,
            scope: scope.map(|s| Country::parse(s).unwrap()),
            agency: None,
        }
    }

    fn banaadir() -> AreaRegistered {
        AreaRegistered {
            area: "SOM-BAN".into(),
            country: Country::parse("SO").unwrap(),
            name: "Banaadir".into(),
        }
    }

    fn set(level: i64) -> SetLevel {
        SetLevel {
            area: "SOM-BAN".into(),
            level: SecurityLevel::new(level).unwrap(),
            reason: "attacks on the airport road".into(),
        }
    }

    fn record(events: Vec<DomainEvent>) -> Vec<RecordedEvent> {
        let stream = events::domain::level::stream_for("SOM-BAN");
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let meta = Meta {
                    actor: Some("duty.one".into()),
                    ..Meta::default()
                };
                let n = i as u64 + 1;
                RecordedEvent::record(
                    e.to_new_event(Uuid::from_u128(n as u128), meta),
                    stream.clone(),
                    n,
                    n,
                    OffsetDateTime::UNIX_EPOCH,
                )
            })
            .collect()
    }

    #[test]
    fn a_duty_officer_raises_and_lowers_with_the_previous_level() {
        let duty = actor(Role::DutyOfficer, None);
        let area = banaadir();
        let first = decide(Some(&area), &History::default(), &duty, set(4)).unwrap();
        let history = History::fold(&record(first.clone()));
        assert_eq!(history.current(), Some(SecurityLevel::Substantial));
        let second = decide(Some(&area), &history, &duty, set(5)).unwrap();
        let [DomainEvent::AreaSecurityLevelSet(e)] = second.as_slice() else {
            panic!("{second:?}")
        };
        assert_eq!(e.previous_level, Some(SecurityLevel::Substantial));
        assert_eq!(e.country.as_str(), "SO");
        let full = History::fold(&record([first, second].concat()));
        assert_eq!(full.entries.len(), 2);
        assert_eq!(full.entries[1].name, "High");
        assert_eq!(full.entries[1].set_by.as_deref(), Some("duty.one"));
        // Confirming the current level is allowed.
        assert!(decide(Some(&area), &full, &duty, set(5)).is_ok());
    }

    #[test]
    fn refusals() {
        let duty = actor(Role::DutyOfficer, None);
        let none = History::default();
        let code = |r: Result<Vec<DomainEvent>, Refusal>| r.unwrap_err().code;
        assert_eq!(
            code(decide(None, &none, &duty, set(2))),
            RefusalCode::NotFound
        );
        for role in [Role::FieldOfficer, Role::WallScreen, Role::CrisisManager] {
            let who = actor(role, Some("SO"));
            assert_eq!(
                code(decide(Some(&banaadir()), &none, &who, set(2))),
                RefusalCode::Forbidden
            );
        }
        let blank = SetLevel {
            reason: " ".into(),
            ..set(2)
        };
        assert_eq!(
            code(decide(Some(&banaadir()), &none, &duty, blank)),
            RefusalCode::Invalid
        );
        let kenya = actor(Role::FieldOfficer, Some("KE"));
        assert_eq!(
            may_read(Some(&banaadir()), &kenya, "SOM-BAN")
                .unwrap_err()
                .code,
            RefusalCode::NotFound
        );
        assert!(
            may_read(
                Some(&banaadir()),
                &actor(Role::FieldOfficer, Some("SO")),
                "x"
            )
            .is_ok()
        );
        assert!(may_read(Some(&banaadir()), &actor(Role::WallScreen, None), "x").is_err());
    }
}
