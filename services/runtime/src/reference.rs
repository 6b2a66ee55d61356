//! Reference data, folded once per process: areas, duty stations, agencies and personnel
//! (`AreaRegistered`, `DutyStationRegistered`, `AgencyRegistered`, `PersonRegistered`, loaded
//! by `vigil import`), indexed by id, shared by every hosted service of the process.
//!
//! # Why one copy
//! Personnel is the largest thing a service holds (150,000 people in a real centre). When each
//! service folded its own copy, `vigil up` held one per service that needed it; now the
//! services of one process share one [`Shared`] register (an `Arc`), and a service run alone
//! (`vigil relocation`) has its own, so each process holds exactly one copy.
//!
//! # Promises
//! - **Folded once, like a register.** [`Reference`] is a [`ReadModel`] named `reference`:
//!   it follows the log through the catch-up subscription on its own fold thread, is
//!   checkpointed like the services' registers (`<data-dir>/checkpoints/reference.ckpt`,
//!   [`REFERENCE_VERSION`]), and answers only once it has read the log as it stood at start
//!   (a service counts as ready only then: [`crate::status`]).
//! - **The latest registration stands**, as it did in each service's own fold; and every
//!   registration is kept with its log position, so a register that decides at an event's
//!   position (relocation's presence tracker) reads the reference data *as it stood there*
//!   ([`Reference::as_of`]), whichever of the two folds is ahead: a replay decides the same.
//!   A register that needs that waits until the shared one has folded the position
//!   ([`ReadModel::wait_for`]).
//! - **One per process and bus.** [`acquire`] hands every hosted service of a process that is
//!   connected to the same nats-server the same register; the first starts it, the last to
//!   [`Lease::release`] it stops it after its last checkpoint. Two centres in one process (a
//!   test) never share one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_nats::Client;
use events::RecordedEvent;
use events::codec::Decoded;
use events::domain::DomainEvent;
use events::domain::agency::AgencyRegistered;
use events::domain::area::AreaRegistered;
use events::domain::person::PersonRegistered;
use events::domain::station::DutyStationRegistered;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Codec;
use crate::{Fold, ReadModel};

/// The register's name: its checkpoint file, its catch-up consumer, its logs.
pub const NAME: &str = "reference";

/// The code version of [`Reference`]'s state and fold, written in its checkpoints: bump it
/// whenever either changes.
pub const REFERENCE_VERSION: u32 = 1;

/// Every registration of one thing, with the log position of each: the latest stands.
///
/// Almost everything is registered once; the first registration is kept inline so that the
/// usual case costs no second allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registrations<T> {
    first: (u64, T),
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    later: Vec<(u64, T)>,
}

impl<T: PartialEq> Registrations<T> {
    fn new(position: u64, record: T) -> Self {
        Self {
            first: (position, record),
            later: Vec::new(),
        }
    }

    /// Records a registration at `position` (a later one), unless it repeats the latest.
    fn push(&mut self, position: u64, record: T) {
        if *self.latest() != record {
            self.later.push((position, record));
        }
    }

    /// The registration that stands now.
    pub fn latest(&self) -> &T {
        self.later.last().map_or(&self.first.1, |(_, r)| r)
    }

    /// The registration that stood at log position `position` (none before the first).
    pub fn at(&self, position: u64) -> Option<&T> {
        std::iter::once(&self.first)
            .chain(&self.later)
            .take_while(|(p, _)| *p <= position)
            .last()
            .map(|(_, r)| r)
    }
}

/// Registrations by id.
type ById<T> = HashMap<String, Registrations<T>>;

fn register<T: PartialEq>(map: &mut ById<T>, id: String, position: u64, record: T) {
    match map.get_mut(&id) {
        Some(r) => r.push(position, record),
        None => {
            map.insert(id, Registrations::new(position, record));
        }
    }
}

/// Areas, duty stations, agencies and personnel, by id, folded from the whole log.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    areas: ById<AreaRegistered>,
    stations: ById<DutyStationRegistered>,
    agencies: ById<AgencyRegistered>,
    persons: ById<PersonRegistered>,
    /// The last position applied: events at or below it are duplicates.
    position: u64,
}

impl Fold for Reference {
    fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        if !matches!(
            e.stream.category().as_str(),
            "area" | "station" | "agency" | "person"
        ) {
            return;
        }
        let Decoded::Known(event) = DomainEvent::decode(e) else {
            return;
        };
        let at = e.position;
        match event {
            DomainEvent::AreaRegistered(a) => register(&mut self.areas, a.area.clone(), at, a),
            DomainEvent::DutyStationRegistered(s) => {
                register(&mut self.stations, s.station.clone(), at, s)
            }
            DomainEvent::AgencyRegistered(a) => {
                register(&mut self.agencies, a.agency.clone(), at, a)
            }
            DomainEvent::PersonRegistered(p) => {
                register(&mut self.persons, p.person.clone(), at, p)
            }
            _ => {}
        }
    }

    fn checkpoint() -> Option<Codec<Self>> {
        Some(Codec::json(REFERENCE_VERSION))
    }
}

/// Reference data to decide with: the latest ([`Reference`] itself) or as it stood at a log
/// position ([`AsOf`]).
pub trait Directory {
    /// A person's registration.
    fn person(&self, id: &str) -> Option<&PersonRegistered>;
    /// A duty station's registration.
    fn station(&self, id: &str) -> Option<&DutyStationRegistered>;
    /// Every registered person, in no order.
    fn persons(&self) -> Box<dyn Iterator<Item = &PersonRegistered> + '_>;
}

impl Directory for Reference {
    fn person(&self, id: &str) -> Option<&PersonRegistered> {
        self.persons.get(id).map(Registrations::latest)
    }

    fn station(&self, id: &str) -> Option<&DutyStationRegistered> {
        self.stations.get(id).map(Registrations::latest)
    }

    fn persons(&self) -> Box<dyn Iterator<Item = &PersonRegistered> + '_> {
        Box::new(self.persons.values().map(Registrations::latest))
    }
}

/// The reference data as it stood at a log position.
pub struct AsOf<'a> {
    reference: &'a Reference,
    position: u64,
}

impl Directory for AsOf<'_> {
    fn person(&self, id: &str) -> Option<&PersonRegistered> {
        self.reference.persons.get(id)?.at(self.position)
    }

    fn station(&self, id: &str) -> Option<&DutyStationRegistered> {
        self.reference.stations.get(id)?.at(self.position)
    }

    fn persons(&self) -> Box<dyn Iterator<Item = &PersonRegistered> + '_> {
        let at = self.position;
        Box::new(
            self.reference
                .persons
                .values()
                .filter_map(move |r| r.at(at)),
        )
    }
}

impl Reference {
    /// The reference data as it stood at log position `position`.
    pub fn as_of(&self, position: u64) -> AsOf<'_> {
        AsOf {
            reference: self,
            position,
        }
    }

    /// An area's registration.
    pub fn area(&self, id: &str) -> Option<&AreaRegistered> {
        self.areas.get(id).map(Registrations::latest)
    }

    /// An agency's registration.
    pub fn agency(&self, id: &str) -> Option<&AgencyRegistered> {
        self.agencies.get(id).map(Registrations::latest)
    }

    /// Every registered agency, by id.
    pub fn agencies(&self) -> BTreeMap<&str, &AgencyRegistered> {
        self.agencies
            .iter()
            .map(|(id, r)| (id.as_str(), r.latest()))
            .collect()
    }

    /// How many people are registered.
    pub fn person_count(&self) -> usize {
        self.persons.len()
    }

    /// The last log position applied.
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// The process's reference register, shared by its hosted services.
#[derive(Clone)]
pub struct Shared(Arc<ReadModel<Reference>>);

impl Shared {
    /// The register (caught up or not: see [`ReadModel::caught_up`]).
    pub fn model(&self) -> &ReadModel<Reference> {
        &self.0
    }

    /// A register folded by the caller (tests, tools): never follows a log.
    pub fn detached(reference: Reference) -> Self {
        let position = reference.position();
        Self(ReadModel::detached(NAME, reference, position))
    }
}

impl std::ops::Deref for Shared {
    type Target = ReadModel<Reference>;

    fn deref(&self) -> &ReadModel<Reference> {
        &self.0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(reference at position {})", self.0.position())
    }
}

/// Two handles are equal when they are the same register.
impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A hosted service's hold on the shared register; the register stops when the last is
/// released (or dropped).
pub struct Lease {
    key: String,
    shared: Shared,
    held: bool,
}

struct Entry {
    shared: Shared,
    holders: usize,
    stop: CancellationToken,
}

/// The running registers of this process, by the nats-server their services are connected to.
static REGISTERS: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

/// The reference register of the services of this process on `client`'s nats-server: started
/// by the first caller, shared by the others. Must be called inside a tokio runtime.
pub fn acquire(client: &Client) -> Lease {
    let key = client.server_info().server_id;
    let mut registers = REGISTERS.lock().unwrap_or_else(|p| p.into_inner());
    let entry = registers.entry(key.clone()).or_insert_with(|| {
        let stop = CancellationToken::new();
        tracing::info!("starting the process's shared reference register");
        Entry {
            shared: Shared(ReadModel::start(client.clone(), NAME, stop.clone())),
            holders: 0,
            stop,
        }
    });
    entry.holders += 1;
    Lease {
        key,
        shared: entry.shared.clone(),
        held: true,
    }
}

impl Lease {
    /// The shared register.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Lets go of the register; the last holder stops it and waits for its last checkpoint.
    pub async fn release(mut self) {
        if self.let_go() {
            self.shared.stopped().await;
        }
    }

    /// Whether this was the last hold (the register is then told to stop).
    fn let_go(&mut self) -> bool {
        if !std::mem::replace(&mut self.held, false) {
            return false;
        }
        let mut registers = REGISTERS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = registers.get_mut(&self.key) else {
            return false;
        };
        entry.holders = entry.holders.saturating_sub(1);
        if entry.holders > 0 || !Arc::ptr_eq(&entry.shared.0, &self.shared.0) {
            return false;
        }
        if let Some(entry) = registers.remove(&self.key) {
            entry.stop.cancel();
        }
        true
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.let_go();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::domain::DomainEvent;
    use events::{Meta, StreamName};
    use time::OffsetDateTime;

    fn person(station: &str) -> PersonRegistered {
        PersonRegistered {
            person: "P-1".into(),
            name: "Amina Hassan".into(),
            agency: "unicef".into(),
            nationality: events::validate::Country::parse("KE").unwrap(),
            duty_station: station.into(),
            dependants: 0,
            security_officer: false,
            essential: false,
        }
    }

    fn recorded(position: u64, stream: StreamName, event: DomainEvent) -> RecordedEvent {
        RecordedEvent::record(
            event.to_new_event(uuid::Uuid::new_v4(), Meta::default()),
            stream,
            position,
            1,
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn the_latest_registration_stands_and_each_is_kept_at_its_position() {
        let stream = events::domain::person::stream_for("P-1");
        let mut r = Reference::default();
        r.apply(&recorded(3, stream.clone(), person("A").into()));
        r.apply(&recorded(7, stream.clone(), person("B").into()));
        r.apply(&recorded(7, stream.clone(), person("C").into())); // a duplicate position
        r.apply(&recorded(9, stream, person("B").into())); // the same again: nothing new
        assert_eq!(r.person("P-1").map(|p| p.duty_station.as_str()), Some("B"));
        assert_eq!(r.as_of(2).person("P-1"), None);
        let at = |p| r.as_of(p).person("P-1").map(|p| p.duty_station.clone());
        assert_eq!(at(3).as_deref(), Some("A"));
        assert_eq!(at(6).as_deref(), Some("A"));
        assert_eq!(at(7).as_deref(), Some("B"));
        assert_eq!(r.persons["P-1"].later.len(), 1);
        assert_eq!(r.position(), 9);
        assert_eq!(r.as_of(5).persons().count(), 1);
        assert_eq!(r.as_of(1).persons().count(), 0);
    }
}
