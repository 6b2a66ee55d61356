//! The broadcast configuration file (versioned JSON): the rules that turn events into
//! broadcasts, each agency's delivery endpoints, and how deliveries are retried. Pure: the
//! file is parsed and the rules are applied to events here; reading the file and acting on
//! the firings is the service's.
//!
//! # A rule
//! `{"id": "evacuation-to-country", "on": "order_issued", "kinds": ["evacuation"],
//!   "audience": "trigger_country", "severity": "critical", "ack_within_minutes": 60}`
//! - `on`: `order_issued` (a relocation or evacuation order; `kinds` filters),
//!   `level_raised` (an area's level set to at least `min_level`, higher than before),
//!   `un_casualties` (an incident reported with killed or injured), `hostage_case_opened`.
//! - `audience`: `trigger_country` (the agencies in the event's country), `all_agencies`,
//!   `duty_officers`, `crisis_managers`.
//!
//! # Promises
//! - [`Rule::fire`] is a function of the rule and the recorded trigger only (its id, time
//!   and data) plus the agencies passed in: every instance, on every replay, builds the same
//!   broadcast with the same id ([`firing_id`]), so the store keeps it once.
//! - A hostage-case firing carries no names (counts only).
//! - A trigger older than `fire_within_minutes` when first seen does not fire: deploying
//!   the service on an old log does not replay a year of alerts.
//! - Flap damping ([`Damper`]): a `level_raised` rule fires at most once per area within
//!   `damp_minutes` (default 60; 0 turns damping off) of its last firing there, unless the
//!   level rises above the level last broadcast; a damped trigger is counted on that
//!   broadcast (`BroadcastTriggerSuppressed`). The decision is a function of the triggers'
//!   recorded times and levels in log order, so every instance and replay decides alike.

use std::collections::BTreeMap;
use std::time::Duration;

use events::RecordedEvent;
use events::domain::DomainEvent;
use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity, Firing};
use events::domain::relocation::{OrderKind, Scope};
use events::validate::Country;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::broadcast::Retry;

/// The configuration shipped with Vigil: the four rules of the centre's procedures, no
/// agency endpoints (NATS and the CAP feeds need none).
pub const DEFAULT_CONFIG: &str = include_str!("../broadcast.json");

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// What sets a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A relocation or evacuation order (`RelocationOrdered`).
    OrderIssued,
    /// An area's security level raised (`AreaSecurityLevelSet`).
    LevelRaised,
    /// An incident reported with UN casualties (`IncidentReported`).
    UnCasualties,
    /// A hostage case opened (`HostageCaseOpened`).
    HostageCaseOpened,
}

/// Who a rule's broadcast goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAudience {
    /// The agencies present in the trigger's country.
    TriggerCountry,
    /// Every agency.
    AllAgencies,
    /// The centre's duty officers (the board).
    DutyOfficers,
    /// The centre's crisis managers only.
    CrisisManagers,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its id: part of the broadcast id, so never reuse one for a different rule.
    pub id: String,
    /// What sets it off.
    pub on: Trigger,
    /// For `order_issued`: which kinds (default both).
    #[serde(default)]
    pub kinds: Vec<OrderKind>,
    /// For `level_raised`: the lowest level that fires (default 5).
    #[serde(default)]
    pub min_level: Option<u8>,
    /// Who it goes to.
    pub audience: RuleAudience,
    /// How urgent.
    pub severity: BroadcastSeverity,
    /// Acknowledgement due this many minutes after the trigger (none: no acknowledgement).
    #[serde(default)]
    pub ack_within_minutes: Option<u32>,
}

/// One agency's delivery endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Webhook URL (POST JSON, signed).
    #[serde(default)]
    pub webhook: Option<String>,
    /// The HMAC-SHA256 key of the webhook's signature.
    #[serde(default)]
    pub secret: Option<String>,
    /// The agency takes no exercises.
    #[serde(default)]
    pub live_only: bool,
    /// The agency's systems listen on `vigil.alerts.<agency>` (default); `false` for an
    /// agency reached by webhook only.
    #[serde(default = "defaults::yes")]
    pub nats: bool,
}

/// Delivery retries, in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per agency, channel and round.
    #[serde(default = "defaults::attempts")]
    pub attempts: u32,
    /// First wait after a failure, in milliseconds; doubled each time.
    #[serde(default = "defaults::backoff_ms")]
    pub backoff_ms: u64,
    /// The longest wait, in milliseconds.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// A webhook call that takes longer fails, in milliseconds.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// A claimed attempt with no outcome after this many seconds is retried.
    #[serde(default = "defaults::claim_timeout_s")]
    pub claim_timeout_s: u64,
}

mod defaults {
    pub fn attempts() -> u32 {
        5
    }
    pub fn backoff_ms() -> u64 {
        1_000
    }
    pub fn max_backoff_ms() -> u64 {
        60_000
    }
    pub fn timeout_ms() -> u64 {
        5_000
    }
    pub fn claim_timeout_s() -> u64 {
        30
    }
    pub fn fire_within_minutes() -> u32 {
        60
    }
    pub fn damp_minutes() -> u32 {
        60
    }
    pub fn yes() -> bool {
        true
    }
    pub fn sender() -> String {
        "vigil@centre.invalid".to_owned()
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            attempts: defaults::attempts(),
            backoff_ms: defaults::backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            timeout_ms: defaults::timeout_ms(),
            claim_timeout_s: defaults::claim_timeout_s(),
        }
    }
}

impl DeliveryConfig {
    /// The retry policy.
    pub fn retry(&self) -> Retry {
        Retry {
            attempts: self.attempts,
            backoff: Duration::from_millis(self.backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            claim_timeout: Duration::from_secs(self.claim_timeout_s),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file's version: recorded in every firing, raise it on every change.
    pub version: u32,
    /// CAP `sender` of the centre's alerts.
    #[serde(default = "defaults::sender")]
    pub sender: String,
    /// Triggers older than this when first seen do not fire.
    #[serde(default = "defaults::fire_within_minutes")]
    pub fire_within_minutes: u32,
    /// A `level_raised` rule fires again for the same area within this many minutes of its
    /// last firing there only for a higher level (0: no damping).
    #[serde(default = "defaults::damp_minutes")]
    pub damp_minutes: u32,
    /// Retries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Endpoints by agency id.
    #[serde(default)]
    pub agencies: BTreeMap<String, Endpoint>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Config {
    /// Parses and checks a configuration file's text; the error says what to fix.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(format!(
                "the broadcast configuration is over {MAX_CONFIG_BYTES} bytes"
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("the broadcast configuration is not valid at {e}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::BTreeSet::new();
        for r in &self.rules {
            events::validate::id("rules[].id", &r.id).map_err(|e| e.to_string())?;
            if !ids.insert(&r.id) {
                return Err(format!("rule id {:?} is used twice", r.id));
            }
            if r.min_level.is_some_and(|l| !(1..=6).contains(&l)) {
                return Err(format!("rule {:?}: min_level is 1 to 6", r.id));
            }
        }
        for (agency, e) in &self.agencies {
            if e.webhook.is_some() != e.secret.is_some() {
                return Err(format!(
                    "agency {agency:?}: a webhook needs a secret (and a secret a webhook)"
                ));
            }
            if let Some(url) = &e.webhook
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "agency {agency:?}: the webhook must be an http:// or https:// URL"
                ));
            }
        }
        if self.delivery.attempts == 0 {
            return Err("delivery.attempts must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Whether `agency` takes exercises.
    pub fn takes_exercises(&self, agency: &str) -> bool {
        self.agencies.get(agency).is_none_or(|e| !e.live_only)
    }
}

/// The broadcast id of `rule` firing on `trigger`: the same on every instance and replay.
pub fn firing_id(rule: &str, trigger: Uuid) -> Uuid {
    Uuid::new_v5(&trigger, format!("vigil-rule/{rule}").as_bytes())
}

/// Where a firing is damped: the rule's firings for one area, and the level it announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DampKey {
    /// The group (`<country>/<area>`).
    pub group: String,
    /// The level announced.
    pub level: u8,
}

/// What the damper decided for a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damping {
    /// Fire it.
    Fire,
    /// Do not: this broadcast, fired for the same rule and group within the window at the
    /// same or a higher level, stands for it.
    Suppress(Uuid),
}

/// The last firing of each rule and group: decides whether a new firing goes out. Fed in log
/// order, it decides the same on every instance and replay (no clock: the window is measured
/// between the triggers' recorded times).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damper {
    #[serde(with = "runtime::checkpoint::pairs")]
    last: BTreeMap<(String, String), (OffsetDateTime, u8, Uuid)>,
}

impl Damper {
    /// Whether rule `rule`'s firing `broadcast` for `key`, triggered at `at`, goes out; a
    /// firing that goes out becomes the one later firings are measured against.
    pub fn decide(
        &mut self,
        rule: &str,
        key: &DampKey,
        at: OffsetDateTime,
        broadcast: Uuid,
        window: time::Duration,
    ) -> Damping {
        let slot = (rule.to_owned(), key.group.clone());
        if let Some((last_at, last_level, last_id)) = self.last.get(&slot)
            && at - *last_at < window
            && key.level <= *last_level
        {
            return Damping::Suppress(*last_id);
        }
        self.last.insert(slot, (at, key.level, broadcast));
        Damping::Fire
    }
}

/// What a trigger says, for the broadcast's text.
struct Fired {
    country: Country,
    title: String,
    body: String,
}

impl Rule {
    /// The broadcast this rule issues for `trigger` (decoded as `event`), if it fires. `agencies_in(country)`
    /// lists the agencies present in a country (sorted), `all_agencies` every agency.
    pub fn fire(
        &self,
        rules_version: u32,
        trigger: &RecordedEvent,
        event: &DomainEvent,
        agencies_in: &dyn Fn(Country) -> Vec<String>,
        all_agencies: &dyn Fn() -> Vec<String>,
    ) -> Option<BroadcastIssued> {
        let fired = self.matches(event)?;
        let (audience, recipients) = match self.audience {
            RuleAudience::TriggerCountry => {
                (Audience::Country(fired.country), agencies_in(fired.country))
            }
            RuleAudience::AllAgencies => (Audience::AllAgencies, all_agencies()),
            RuleAudience::DutyOfficers => (Audience::DutyOfficers, vec![]),
            RuleAudience::CrisisManagers => (Audience::CrisisManagers, vec![]),
        };
        if !audience.is_internal() && recipients.is_empty() {
            return None;
        }
        let deadline = self
            .ack_within_minutes
            .map(|m| trigger.recorded_at + time::Duration::minutes(i64::from(m)));
        Some(BroadcastIssued {
            title: fired.title,
            body: fired.body,
            severity: self.severity,
            audience,
            requires_ack: deadline.is_some(),
            ack_deadline: deadline,
            exercise: false,
            updates: None,
            cancels: None,
            recipients,
            rule: Some(Firing {
                rule: self.id.clone(),
                rules_version,
                trigger: trigger.id,
                trigger_type: trigger.event_type.clone(),
            }),
        })
    }

    /// Where a firing of this rule on `event` is damped: `level_raised` firings by area
    /// and level; other rules are not damped (each order, incident and case is news).
    pub fn damp_key(&self, event: &DomainEvent) -> Option<DampKey> {
        match (self.on, event) {
            (Trigger::LevelRaised, DomainEvent::AreaSecurityLevelSet(l)) => Some(DampKey {
                group: format!("{}/{}", l.country, l.area),
                level: l.level.get(),
            }),
            _ => None,
        }
    }

    fn matches(&self, event: &DomainEvent) -> Option<Fired> {
        match (self.on, event) {
            (Trigger::OrderIssued, DomainEvent::RelocationOrdered(o)) => {
                if !self.kinds.is_empty() && !self.kinds.contains(&o.kind) {
                    return None;
                }
                let kind = match o.kind {
                    OrderKind::Relocation => "Relocation",
                    OrderKind::Evacuation => "Evacuation",
                };
                let place = o.duty_station.as_deref().or(o.area.as_deref()).map_or_else(
                    || format!("all of {}", o.country),
                    |p| format!("{p}, {}", o.country),
                );
                let who = match o.scope {
                    Scope::AllPersonnel => "all personnel",
                    Scope::NonEssential => "non-essential personnel",
                    Scope::Dependants => "eligible dependants",
                };
                Some(Fired {
                    country: o.country,
                    title: format!("{kind} ordered: {place}"),
                    body: format!(
                        "{kind} of {who} in {place} has been ordered. Destination: {dest}. Deadline: {deadline}. Follow your agency's instructions and report your status to your security focal point.",
                        dest = o.destination,
                        deadline = rfc3339(o.deadline),
                    ),
                })
            }
            (Trigger::LevelRaised, DomainEvent::AreaSecurityLevelSet(l)) => {
                let level = l.level.get();
                let raised = l.previous_level.is_none_or(|p| p.get() < level);
                if !raised || level < self.min_level.unwrap_or(5) {
                    return None;
                }
                Some(Fired {
                    country: l.country,
                    title: format!(
                        "Security level {level} ({}) in {}, {}",
                        l.level.name(),
                        l.area,
                        l.country
                    ),
                    body: format!(
                        "The security level of {} ({}) was raised to {level} ({}). Reason: {}",
                        l.area,
                        l.country,
                        l.level.name(),
                        l.reason
                    ),
                })
            }
            (Trigger::UnCasualties, DomainEvent::IncidentReported(i)) => {
                let c = i.casualties.as_ref()?;
                if c.killed == 0 && c.injured == 0 {
                    return None;
                }
                Some(Fired {
                    country: i.country,
                    title: format!("UN casualties in {}: {}", i.country, i.title),
                    body: format!(
                        "Incident reported in {} with UN casualties: {} killed, {} injured. Verify and follow up on the board.",
                        i.country, c.killed, c.injured
                    ),
                })
            }
            (Trigger::HostageCaseOpened, DomainEvent::HostageCaseOpened(h)) => Some(Fired {
                country: h.country,
                // Counts only: names and captors stay in the case file.
                title: format!("Hostage case opened in {}", h.country),
                body: format!(
                    "A hostage case was opened in {}: {} person(s) held. Details are in the case file (crisis managers).",
                    h.country,
                    h.persons.len()
                ),
            }),
            _ => None,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_shipped_configuration_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert!(c.rules.len() >= 4);
        assert!(c.agencies.is_empty(), "no endpoints or secrets are shipped");
    }

    #[test]
    fn a_bad_configuration_names_what_to_fix() {
        let e =
            Config::parse(r#"{"version": 1, "rules": [{"id": "x", "on": "nope"}]}"#).unwrap_err();
        assert!(e.contains("rules[0].on"), "{e}");
        let e = Config::parse(r#"{"version": 1, "agencies": {"wfp": {"webhook": "http://x"}}}"#)
            .unwrap_err();
        assert!(e.contains("needs a secret"), "{e}");
        let e = Config::parse(r#"{"version": 1, "surprise": true}"#).unwrap_err();
        assert!(e.contains("surprise"), "{e}");
        let twice = r#"{"version": 1, "rules": [
            {"id": "a", "on": "hostage_case_opened", "audience": "crisis_managers", "severity": "high"},
            {"id": "a", "on": "hostage_case_opened", "audience": "crisis_managers", "severity": "high"}]}"#;
        assert!(Config::parse(twice).unwrap_err().contains("twice"));
    }

    /// `data` of type `ty` recorded at 03:00 with id 7, decoded.
    fn trigger(ty: &str, data: serde_json::Value) -> (RecordedEvent, DomainEvent) {
        let event: DomainEvent =
            serde_json::from_value(serde_json::json!({"type": ty, "data": data})).unwrap();
        let recorded = RecordedEvent::record(
            event.to_new_event(Uuid::from_u128(7), events::Meta::default()),
            events::StreamName::new(events::Category::parse("x").unwrap(), Uuid::from_u128(1)),
            1,
            1,
            time::macros::datetime!(2026-11-27 03:00 UTC),
        );
        (recorded, event)
    }

    /// What the shipped rules issue for a trigger: (rule id, broadcast).
    fn fired(ty: &str, data: serde_json::Value) -> Vec<(String, BroadcastIssued)> {
        let config = Config::parse(DEFAULT_CONFIG).unwrap();
        let (recorded, event) = trigger(ty, data);
        let in_country = |c: Country| {
            if c.as_str() == "SO" {
                vec!["unicef".to_owned(), "wfp".to_owned()]
            } else {
                vec![]
            }
        };
        let all = || vec!["unicef".to_owned(), "wfp".to_owned(), "who".to_owned()];
        config
            .rules
            .iter()
            .filter_map(|r| {
                r.fire(config.version, &recorded, &event, &in_country, &all)
                    .map(|b| (r.id.clone(), b))
            })
            .collect()
    }

    #[test]
    fn the_shipped_rules_fire_on_what_the_centre_expects() {
        let order = serde_json::json!({"kind": "evacuation", "country": "SO", "scope": "all_personnel",
            "destination": "Nairobi", "deadline": "2026-11-28T00:00:00Z"});
        let f = fired("RelocationOrdered", order);
        assert_eq!(f.len(), 1);
        let (rule, b) = &f[0];
        assert_eq!(rule, "order-to-country");
        assert_eq!(b.recipients, ["unicef", "wfp"]);
        assert_eq!(b.severity, BroadcastSeverity::Critical);
        assert_eq!(
            b.ack_deadline,
            Some(time::macros::datetime!(2026-11-27 04:00 UTC))
        );
        assert_eq!(b.rule.as_ref().unwrap().trigger, Uuid::from_u128(7));
        assert!(b.title.starts_with("Evacuation ordered"), "{}", b.title);
        assert!(b.validate().is_ok());

        let level = |level: u8, previous: Option<u8>| {
            serde_json::json!({"area": "SOM-BAN", "country": "SO", "level": level,
                "reason": "Fighting near the airport", "previous_level": previous})
        };
        assert_eq!(fired("AreaSecurityLevelSet", level(5, Some(4))).len(), 1);
        assert_eq!(fired("AreaSecurityLevelSet", level(6, None)).len(), 1);
        assert!(
            fired("AreaSecurityLevelSet", level(4, Some(3))).is_empty(),
            "below 5"
        );
        assert!(
            fired("AreaSecurityLevelSet", level(5, Some(6))).is_empty(),
            "lowered"
        );
        assert!(
            fired("AreaSecurityLevelSet", level(5, Some(5))).is_empty(),
            "not raised"
        );

        let incident = |killed: u32, injured: u32| {
            serde_json::json!({"country": "SO", "category": "armed_conflict", "severity": 4,
                "title": "Convoy attacked", "occurred_at": "2026-11-27T02:00:00Z",
                "casualties": {"killed": killed, "injured": injured}, "reporter": "fso.so"})
        };
        let f = fired("IncidentReported", incident(1, 2));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].1.audience, Audience::DutyOfficers);
        assert!(f[0].1.recipients.is_empty(), "inside the centre only");
        assert!(fired("IncidentReported", incident(0, 0)).is_empty());

        let case = serde_json::json!({"incident_id": Uuid::from_u128(3), "country": "SO",
            "persons": ["P-0001", "P-0002"], "captors": "Group X"});
        let f = fired("HostageCaseOpened", case);
        assert_eq!(f.len(), 1);
        let b = &f[0].1;
        assert_eq!(b.audience, Audience::CrisisManagers);
        let text = format!("{} {}", b.title, b.body);
        assert!(
            !text.contains("P-000") && !text.contains("Group X"),
            "no names: {text}"
        );
        assert!(text.contains("2 person"), "{text}");

        // No agency present: an agency rule does not fire (nobody to send it to).
        let elsewhere = serde_json::json!({"kind": "relocation", "country": "KE", "scope": "dependants",
            "destination": "Mombasa", "deadline": "2026-11-28T00:00:00Z"});
        assert!(fired("RelocationOrdered", elsewhere).is_empty());
    }

    #[test]
    fn firing_ids_differ_per_rule_and_trigger_and_never_change() {
        let t = Uuid::from_u128(7);
        assert_eq!(firing_id("a", t), firing_id("a", t));
        assert_ne!(firing_id("a", t), firing_id("b", t));
        assert_ne!(firing_id("a", t), firing_id("a", Uuid::from_u128(8)));
        // Pinned: a changed derivation would fire every rule again after an upgrade.
        assert_eq!(
            firing_id("a", Uuid::nil()).to_string(),
            Uuid::new_v5(&Uuid::nil(), b"vigil-rule/a").to_string()
        );
    }

    /// The level rule fed a flapping area: (minutes after 03:00, level, previous level).
    /// Returns per raise: `Some(true)` fired, `Some(false)` damped, `None` not a firing.
    fn flap(damp_minutes: u32, raises: &[(i64, u8, u8)]) -> Vec<Option<bool>> {
        let config = Config::parse(DEFAULT_CONFIG).unwrap();
        let rule = config
            .rules
            .iter()
            .find(|r| r.on == Trigger::LevelRaised)
            .unwrap();
        let window = time::Duration::minutes(i64::from(damp_minutes));
        let mut damper = Damper::default();
        let so = |_: Country| vec!["unicef".to_owned()];
        let all = || vec!["unicef".to_owned()];
        raises
            .iter()
            .enumerate()
            .map(|(n, (minutes, level, previous))| {
                let (mut recorded, event) = trigger(
                    "AreaSecurityLevelSet",
                    serde_json::json!({"area": "SOM-BAN", "country": "SO", "level": level,
                        "reason": "Fighting", "previous_level": previous}),
                );
                recorded.id = Uuid::from_u128(100 + n as u128);
                recorded.recorded_at += time::Duration::minutes(*minutes);
                rule.fire(config.version, &recorded, &event, &so, &all)?;
                let key = rule.damp_key(&event)?;
                let id = firing_id(&rule.id, recorded.id);
                Some(
                    damper.decide(&rule.id, &key, recorded.recorded_at, id, window)
                        == Damping::Fire,
                )
            })
            .collect()
    }

    #[test]
    fn a_flapping_area_is_broadcast_once_per_window_unless_the_level_rises() {
        assert_eq!(Config::parse(DEFAULT_CONFIG).unwrap().damp_minutes, 60);
        // 5, down to 3, 5 again within the hour: one broadcast, one damped.
        let f = flap(60, &[(0, 5, 3), (10, 3, 5), (20, 5, 3)]);
        assert_eq!(f, [Some(true), None, Some(false)]);
        // Then 6: a higher level goes out; 5 again after it stays damped.
        let f = flap(60, &[(0, 5, 3), (20, 5, 3), (30, 6, 5), (40, 5, 3)]);
        assert_eq!(f, [Some(true), Some(false), Some(true), Some(false)]);
        // After the window (measured from the last broadcast, not the damped raises): again.
        let f = flap(60, &[(0, 5, 3), (50, 5, 3), (60, 5, 3), (100, 5, 3)]);
        assert_eq!(f, [Some(true), Some(false), Some(true), Some(false)]);
        // A burst: one broadcast.
        let burst: Vec<(i64, u8, u8)> = (0..500).map(|_| (0, 5, 3)).collect();
        let f = flap(60, &burst);
        assert_eq!(f.iter().filter(|d| **d == Some(true)).count(), 1);
        assert_eq!(f.iter().filter(|d| **d == Some(false)).count(), 499);
        // damp_minutes 0: no damping.
        assert_eq!(flap(0, &[(0, 5, 3), (0, 5, 3)]), [Some(true), Some(true)]);
        // Another area is its own group.
        let mut damper = Damper::default();
        let w = time::Duration::minutes(60);
        let at = time::macros::datetime!(2026-11-27 03:00 UTC);
        let key = |g: &str| DampKey {
            group: g.to_owned(),
            level: 5,
        };
        assert_eq!(
            damper.decide("r", &key("SO/A"), at, Uuid::from_u128(1), w),
            Damping::Fire
        );
        assert_eq!(
            damper.decide("r", &key("SO/B"), at, Uuid::from_u128(2), w),
            Damping::Fire
        );
        assert_eq!(
            damper.decide("r", &key("SO/A"), at, Uuid::from_u128(3), w),
            Damping::Suppress(Uuid::from_u128(1))
        );
        assert_eq!(
            damper.decide("s", &key("SO/A"), at, Uuid::from_u128(4), w),
            Damping::Fire
        );
    }
}
