//! What the relocation service knows about people and places to count a roll call:
//! personnel and duty stations (the process's shared reference register, or its own fold of
//! them without one) and clearances (always its own).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use events::RecordedEvent;
use events::codec::Decoded;
use events::domain::DomainEvent;
use events::domain::clearance::Travel;
use events::domain::person::PersonRegistered;
use events::domain::relocation::{PresenceCause, RelocationOrdered, RollCallEntryAdded, Scope};
use events::domain::station::DutyStationRegistered;
use runtime::reference::{Directory, Shared};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

/// What the centre knows about people and places: personnel, duty stations, clearances.
///
/// In the service, personnel and duty stations are read from the process's shared reference
/// register (`runtime::reference`, given by [`Reference::attach`]): this register then keeps
/// only clearances, and a decision at a trigger's position reads the reference data as it
/// stood there. Without it (a test, a tool) it folds them itself, the same way.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// Personnel by id (latest registration), when not shared.
    pub persons: HashMap<String, PersonRegistered>,
    /// Duty stations by id (latest registration), when not shared.
    pub stations: HashMap<String, DutyStationRegistered>,
    /// Clearances by stream id.
    pub clearances: HashMap<Uuid, Option<Travel>>,
    /// Clearance stream ids by traveller: one person's presence is checked without a scan.
    pub by_traveller: HashMap<String, BTreeSet<Uuid>>,
    /// The process's shared personnel and duty stations, when the service runs in the host
    /// (not saved in a checkpoint: given again to a register restored from one).
    #[serde(skip)]
    pub shared: Option<Shared>,
}

/// How long a decision at a trigger's position waits for the shared register to fold that
/// position (both follow the same log; this is a margin for a loaded machine).
const SHARED_WAIT: Duration = Duration::from_secs(10);

/// This register's own personnel and duty stations, as a [`Directory`].
struct Own<'a>(&'a Reference);

impl Directory for Own<'_> {
    fn person(&self, id: &str) -> Option<&PersonRegistered> {
        self.0.persons.get(id)
    }

    fn station(&self, id: &str) -> Option<&DutyStationRegistered> {
        self.0.stations.get(id)
    }

    fn persons(&self) -> Box<dyn Iterator<Item = &PersonRegistered> + '_> {
        Box::new(self.0.persons.values())
    }
}

impl Reference {
    /// Reads personnel and duty stations from the process's shared register from now on.
    pub fn attach(&mut self, shared: &Shared) {
        self.shared = Some(shared.clone());
    }

    /// Applies one event of the log (reference data and clearances; others are ignored).
    /// Returns the person whose presence somewhere may have changed, and how: a personnel
    /// record (a new person or a new duty station) or one of their clearances.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Option<(String, PresenceCause)> {
        let category = recorded.stream.category().as_str();
        if !matches!(category, "person" | "station" | "clearance") {
            return None;
        }
        let Decoded::Known(event) = DomainEvent::decode(recorded) else {
            return None;
        };
        let own = self.shared.is_none();
        match event {
            DomainEvent::PersonRegistered(p) => {
                let person = p.person.clone();
                if own {
                    self.persons.insert(person.clone(), p);
                }
                Some((person, PresenceCause::Assignment))
            }
            DomainEvent::DutyStationRegistered(s) => {
                if own {
                    self.stations.insert(s.station.clone(), s);
                }
                None
            }
            other => {
                let id = recorded.stream.id();
                let travel = self.clearances.entry(id).or_default();
                Travel::apply(travel, &other);
                let traveller = travel.as_ref()?.traveller.clone();
                self.by_traveller
                    .entry(traveller.clone())
                    .or_default()
                    .insert(id);
                Some((traveller, PresenceCause::Clearance))
            }
        }
    }

    /// Runs `f` with the personnel and duty stations to decide with: as they stood at log
    /// position `at` (a trigger's; the shared register is waited for until it has folded
    /// it), or the latest (`None`).
    pub(super) fn with<T>(&self, at: Option<u64>, f: impl FnOnce(&dyn Directory) -> T) -> T {
        if let Some(shared) = &self.shared {
            if let Some(at) = at
                && !shared.wait_for(at, SHARED_WAIT)
            {
                tracing::warn!(
                    position = at,
                    reference_at = shared.position(),
                    "the shared reference register is behind this decision; deciding with what it has"
                );
            }
            if let Ok(r) = shared.read() {
                return match at {
                    Some(at) => f(&r.as_of(at)),
                    None => f(&*r),
                };
            }
        }
        f(&Own(self))
    }

    /// Whether a duty station is inside the order's place.
    fn station_in_place(order: &RelocationOrdered, station: &DutyStationRegistered) -> bool {
        station.country == order.country
            && match (&order.duty_station, &order.area) {
                (Some(ds), _) => &station.station == ds,
                (None, Some(area)) => &station.area == area,
                (None, None) => true,
            }
    }

    /// The area travellers are counted in: the order's, or its station's.
    fn travel_area<'a>(dir: &'a dyn Directory, order: &'a RelocationOrdered) -> Option<&'a str> {
        order.area.as_deref().or_else(|| {
            order
                .duty_station
                .as_deref()
                .and_then(|s| dir.station(s))
                .map(|s| s.area.as_str())
        })
    }

    /// Whether the order's scope takes this person (unknown people are kept: someone is there).
    fn in_scope(order: &RelocationOrdered, person: Option<&PersonRegistered>) -> bool {
        match order.scope {
            Scope::AllPersonnel => true,
            Scope::NonEssential => person.is_none_or(|p| !p.essential),
            Scope::Dependants => person.is_some_and(|p| p.dependants > 0),
        }
    }

    /// The roll-call entry of `person`, from their personnel record if there is one.
    pub(super) fn entry(dir: &dyn Directory, person: &str) -> RollCallEntryAdded {
        let p = dir.person(person);
        RollCallEntryAdded {
            person: person.to_owned(),
            agency: p.map(|p| p.agency.clone()),
            duty_station: p.map(|p| p.duty_station.clone()),
            dependants: p.map_or(0, |p| p.dependants),
        }
    }

    /// The roll call of `order` given on `on`: see the module doc.
    pub fn roll_call(&self, order: &RelocationOrdered, on: Date) -> Vec<RollCallEntryAdded> {
        self.with(None, |dir| self.roll_call_in(dir, order, on))
    }

    fn roll_call_in(
        &self,
        dir: &dyn Directory,
        order: &RelocationOrdered,
        on: Date,
    ) -> Vec<RollCallEntryAdded> {
        let mut people: BTreeSet<&str> = dir
            .persons()
            .filter(|p| {
                dir.station(&p.duty_station)
                    .is_some_and(|s| Self::station_in_place(order, s))
            })
            .map(|p| p.person.as_str())
            .collect();
        let travel_area = Self::travel_area(dir, order);
        let travellers = self
            .clearances
            .values()
            .flatten()
            .filter(|t| t.present(order.country, travel_area, on))
            .map(|t| t.traveller.as_str());
        people.extend(travellers);
        people
            .into_iter()
            .filter(|id| Self::in_scope(order, dir.person(id)))
            .map(|id| Self::entry(dir, id))
            .collect()
    }

    /// Whether `person` belongs on the roll call of `order` on `on`: the same rule as
    /// [`Reference::roll_call`], for one person.
    pub fn covers(&self, order: &RelocationOrdered, person: &str, on: Date) -> bool {
        self.with(None, |dir| self.covers_in(dir, order, person, on))
    }

    pub(super) fn covers_in(
        &self,
        dir: &dyn Directory,
        order: &RelocationOrdered,
        person: &str,
        on: Date,
    ) -> bool {
        let p = dir.person(person);
        let assigned = p.is_some_and(|p| {
            dir.station(&p.duty_station)
                .is_some_and(|s| Self::station_in_place(order, s))
        });
        let travel_area = Self::travel_area(dir, order);
        let travelling = || {
            self.by_traveller
                .get(person)
                .into_iter()
                .flatten()
                .filter_map(|c| self.clearances.get(c)?.as_ref())
                .any(|t| t.present(order.country, travel_area, on))
        };
        (assigned || travelling()) && Self::in_scope(order, p)
    }

    /// A person's name, for the duty views of a roll call.
    pub fn name(&self, person: &str) -> Option<String> {
        self.with(None, |dir| dir.person(person).map(|p| p.name.clone()))
    }
}
