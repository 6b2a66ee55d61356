//! The register: the service's view of the log, folded by [`runtime::ReadModel`]. It owns the
//! registered agencies (and so who an audience reaches), every broadcast with its per-agency
//! state, which broadcast updates which, and the rule firings and damped triggers decided at
//! their trigger's position but not yet in the log.
//!
//! Promises: the fold is pure and position-ordered (an event at or before the last position is
//! ignored), so every instance and every replay decides the same firings, the same ids and the
//! same damping; a firing or a suppression leaves `pending`/`suppressions` once its event is
//! read back from the log.
//!
//! # Checkpoint
//! The register is checkpointed ([`REGISTER_VERSION`]) with everything above, the firings and
//! suppressions decided and not yet in the log included, so a start folds only the log after
//! it. What the fold decides depends on the broadcast configuration (its rules, damping and
//! agencies), which is not saved, only its digest: a checkpoint folded under another
//! configuration is refused ([`runtime::Fold::adopt`]) and the whole log is folded again
//! under the new one, as a start without a checkpoint would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use events::RecordedEvent;
use events::command::Refusal;
use events::domain::DomainEvent;
use events::domain::agency::AgencyRegistered;
use events::domain::broadcast::{self as bevents, Audience, BroadcastIssued};
use events::validate::Country;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::broadcast::Broadcast;
use crate::rules::Config;
use crate::scheduler::channels_of;
use crate::{broadcast, rules};

/// The register's checkpoint version: bump it whenever [`Register`]'s saved state or its
/// fold changes.
pub(crate) const REGISTER_VERSION: u32 = 1;

/// A rule firing waiting to be appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) issued: BroadcastIssued,
    pub(crate) trigger: Uuid,
    pub(crate) trigger_at: OffsetDateTime,
    pub(crate) correlation_id: Option<Uuid>,
}

/// A damped trigger waiting to be recorded on the broadcast that damped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Suppression {
    /// The broadcast that stands for it.
    pub(crate) broadcast: Uuid,
    pub(crate) event: bevents::BroadcastTriggerSuppressed,
    pub(crate) trigger_at: OffsetDateTime,
}

/// The service's view of the log.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Register {
    /// Not saved: given again by [`runtime::Fold::adopt`].
    #[serde(skip, default = "empty_config")]
    pub(crate) config: Arc<Config>,
    /// SHA-256 of the configuration (hex), so a checkpoint folded under another is refused.
    pub(crate) config_digest: String,
    pub(crate) agencies: BTreeMap<String, AgencyRegistered>,
    pub(crate) broadcasts: HashMap<Uuid, Broadcast>,
    /// Broadcasts newest first is `order` reversed.
    pub(crate) order: Vec<Uuid>,
    /// Original → the broadcast that updates it.
    pub(crate) superseded: HashMap<Uuid, Uuid>,
    /// Rule firings not yet in the log, by broadcast id.
    pub(crate) pending: BTreeMap<Uuid, Pending>,
    /// The last firing of each damped rule and group (see [`rules::Damper`]).
    pub(crate) damper: rules::Damper,
    /// Damped triggers not yet in the log, by the id their firing would have had (the
    /// event's id).
    pub(crate) suppressions: BTreeMap<Uuid, Suppression>,
    /// Broadcasts that may still have work.
    pub(crate) active: BTreeSet<Uuid>,
    pub(crate) position: u64,
}

/// No rules, no endpoints: the configuration of a register that was given none.
fn empty_config() -> Arc<Config> {
    Arc::new(Config {
        version: 0,
        sender: String::new(),
        fire_within_minutes: 0,
        damp_minutes: 0,
        delivery: rules::DeliveryConfig::default(),
        agencies: BTreeMap::new(),
        rules: Vec::new(),
    })
}

/// SHA-256 (hex) of the configuration as JSON: the same for the same configuration (its
/// maps are ordered), another for any change that matters to the fold or the deliveries.
fn digest(config: &Config) -> String {
    // A configuration serializes (no map with non-string keys); an empty digest, which no
    // configuration has, would only make every checkpoint be refused.
    serde_json::to_vec(config)
        .map(|json| hex::encode(Sha256::digest(json)))
        .unwrap_or_default()
}

impl Default for Register {
    fn default() -> Self {
        Register::new(empty_config())
    }
}

impl Register {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Register {
            config_digest: digest(&config),
            config,
            agencies: BTreeMap::new(),
            broadcasts: HashMap::new(),
            order: Vec::new(),
            superseded: HashMap::new(),
            pending: BTreeMap::new(),
            damper: rules::Damper::default(),
            suppressions: BTreeMap::new(),
            active: BTreeSet::new(),
            position: 0,
        }
    }

    pub(crate) fn agencies_in(&self, country: Country) -> Vec<String> {
        self.agencies
            .values()
            .filter(|a| a.countries.contains(&country))
            .map(|a| a.agency.clone())
            .collect()
    }

    pub(crate) fn all_agencies(&self) -> Vec<String> {
        self.agencies.keys().cloned().collect()
    }

    /// The agencies `audience` reaches, or why it cannot be sent.
    pub(crate) fn recipients(
        &self,
        audience: &Audience,
        exercise: bool,
    ) -> Result<Vec<String>, Refusal> {
        let takes = |a: &String| !exercise || self.config.takes_exercises(a);
        Ok(match audience {
            Audience::AllAgencies => self.all_agencies().into_iter().filter(takes).collect(),
            Audience::Country(c) => self.agencies_in(*c).into_iter().filter(takes).collect(),
            Audience::Agencies(list) => {
                for a in list {
                    if !self.agencies.contains_key(a) {
                        return Err(Refusal::invalid(format!(
                            "audience.agencies: {a:?} is not a registered agency; check the id (vigil import registers agencies)"
                        )));
                    }
                    if !takes(a) {
                        return Err(Refusal::invalid(format!(
                            "audience.agencies: {a:?} takes live broadcasts only, not exercises"
                        )));
                    }
                }
                let mut list = list.clone();
                list.sort();
                list
            }
            Audience::DutyOfficers | Audience::CrisisManagers => vec![],
        })
    }

    pub(crate) fn is_trigger(event_type: &str) -> bool {
        matches!(
            event_type,
            "RelocationOrdered" | "AreaSecurityLevelSet" | "IncidentReported" | "HostageCaseOpened"
        )
    }
}

impl runtime::Fold for Register {
    fn checkpoint() -> Option<runtime::checkpoint::Codec<Self>> {
        Some(runtime::checkpoint::Codec::json(REGISTER_VERSION))
    }

    fn adopt(&mut self, initial: &Self) -> Result<(), String> {
        if self.config_digest.is_empty() || self.config_digest != initial.config_digest {
            return Err(format!(
                "the broadcast configuration is not the one it was folded under (version {} now)",
                initial.config.version
            ));
        }
        self.config = initial.config.clone();
        Ok(())
    }

    fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        match e.stream.category().as_str() {
            "broadcast" => {
                let id = e.stream.id();
                if e.event_type == "BroadcastTriggerSuppressed" {
                    self.suppressions.remove(&e.id);
                }
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    b.apply(e);
                    self.active.insert(id);
                } else if let Some(b) = Broadcast::start(e) {
                    self.pending.remove(&id);
                    // Fired by an older build that did not damp it: it went out.
                    self.suppressions.remove(&id);
                    if let Some(o) = b.issued.updates {
                        self.superseded.insert(o, id);
                    }
                    self.order.push(id);
                    self.active.insert(id);
                    self.broadcasts.insert(id, b);
                }
            }
            "agency" => {
                if let events::codec::Decoded::Known(DomainEvent::AgencyRegistered(a)) =
                    DomainEvent::decode(e)
                {
                    self.agencies.insert(a.agency.clone(), a);
                }
            }
            _ if Register::is_trigger(&e.event_type) => {
                // Fired here, at the trigger's position, so every instance and every replay
                // sees the same agencies and builds the same broadcast.
                let config = self.config.clone();
                let events::codec::Decoded::Known(event) = DomainEvent::decode(e) else {
                    return;
                };
                for rule in &config.rules {
                    let id = rules::firing_id(&rule.id, e.id);
                    if self.broadcasts.contains_key(&id) {
                        continue;
                    }
                    let fired =
                        rule.fire(config.version, e, &event, &|c| self.agencies_in(c), &|| {
                            self.all_agencies()
                        });
                    let Some(issued) = fired else { continue };
                    if let Some(key) = rule.damp_key(&event) {
                        let window = time::Duration::minutes(i64::from(config.damp_minutes));
                        let decided = self
                            .damper
                            .decide(&rule.id, &key, e.recorded_at, id, window);
                        if let rules::Damping::Suppress(by) = decided {
                            self.suppressions.insert(
                                id,
                                Suppression {
                                    broadcast: by,
                                    event: bevents::BroadcastTriggerSuppressed {
                                        rule: rule.id.clone(),
                                        trigger: e.id,
                                    },
                                    trigger_at: e.recorded_at,
                                },
                            );
                            continue;
                        }
                    }
                    self.pending.insert(
                        id,
                        Pending {
                            issued,
                            trigger: e.id,
                            trigger_at: e.recorded_at,
                            correlation_id: e.meta.correlation_id,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// Forgets broadcasts with nothing left to do (kept in the register for reads; a new event
/// of theirs makes them active again).
pub(crate) fn settle(register: &mut Register) {
    let config = register.config.clone();
    let channels = |agency: &str| channels_of(&config, agency);
    let broadcasts = &register.broadcasts;
    register.active.retain(|id| {
        broadcasts
            .get(id)
            .is_some_and(|b| !broadcast::settled(b, &channels))
    });
}

#[cfg(test)]
mod tests;
