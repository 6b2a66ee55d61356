//! Which of the centre's events a field site of country `CC` receives: the rule, without
//! I/O. The centre's feed for sites (`crate::feed`) and nothing else consults it.
//!
//! # The rule
//! A site gets what a field officer of its country works with at the duty station: its
//! country's incidents, area security levels, relocation/evacuation orders with their roll
//! calls and marks, surges to its stations, its reference data (areas, duty stations, the
//! personnel assigned to its stations, the agencies working in it) and the broadcasts to
//! every agency or to its country. Per stream category:
//!
//! | category | reaches |
//! |---|---|
//! | `incident`, `relocation`, `surge`, `broadcast` | decided once, at the stream's first event (`IncidentReported.country`, `RelocationOrdered.country`, `SurgeRequested.country`, `BroadcastIssued.audience` = `all_agencies` → every site, `{"country": CC}` → CC, any other audience → no site); every later event of the stream goes where the first went |
//! | `level`, `area`, `station` | the event's own `country` |
//! | `person` | the country of the person's `duty_station`, as the station was first registered before this event |
//! | `agency` | every country of its `countries` |
//! | `hostage`, `audit`, `clearance`, `surge_officer`, anything else | no site: restricted details, the centre's own records, people's travel across countries, reservations; a category this build does not know is never sent |
//!
//! # Promises
//! - Pure and deterministic: the reach of an event depends only on it and the log before it
//!   ([`ScopeIndex::learn`] is fed the log in order; [`ScopeIndex::reach`] of an event at or
//!   below [`ScopeIndex::position`] is the same whenever it is asked), so the live feed and a
//!   catch-up read send a site the same events (property-tested below).
//! - When in doubt, no site: an event whose country cannot be read, or whose stream began
//!   with something unexpected, reaches no site.
//! - A stream's reach never changes: an incident moved to another country by an update stays
//!   with the country it was reported in (whose site so learns that it moved away), and a
//!   person re-registered at another country's station reaches the new country from then on
//!   (the old site keeps the older record).

use std::collections::HashMap;

use events::RecordedEvent;
use events::validate::Country;
use serde_json::Value;

/// The sites an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// No site.
    Nowhere,
    /// The sites of these countries.
    Countries(Vec<Country>),
    /// Every site (a broadcast to every agency).
    Everywhere,
}

impl Reach {
    /// Whether a site of `scope` gets the event.
    pub fn includes(&self, scope: Country) -> bool {
        match self {
            Reach::Nowhere => false,
            Reach::Countries(c) => c.contains(&scope),
            Reach::Everywhere => true,
        }
    }

    fn one(country: Option<Country>) -> Self {
        country.map_or(Reach::Nowhere, |c| Reach::Countries(vec![c]))
    }
}

/// What the rule has learnt from the log up to [`Self::position`]: the reach of each stream
/// decided at its first event, and the country of each duty station.
#[derive(Debug, Default)]
pub struct ScopeIndex {
    /// The last position learnt.
    position: u64,
    /// Stream → its reach, for the categories decided at the first event. Only those: the
    /// others are read from each event, so the map holds incidents, orders, surges and
    /// broadcasts, not the personnel.
    streams: HashMap<String, Reach>,
    /// Station → (its country, the position of its first registration). The position keeps
    /// the answer for a person's event independent of when it is asked.
    stations: HashMap<String, (Country, u64)>,
}

fn country_at(data: &Value, field: &str) -> Option<Country> {
    data.get(field)
        .and_then(Value::as_str)
        .and_then(|c| Country::parse(c).ok())
}

/// Categories whose reach is decided at the stream's first event.
const DECIDED_AT_FIRST: [&str; 4] = ["incident", "relocation", "surge", "broadcast"];

/// The reach a stream of a [`DECIDED_AT_FIRST`] category takes from its first event.
fn first_reach(category: &str, event: &RecordedEvent) -> Reach {
    let data = &event.data;
    match (category, event.event_type.as_str()) {
        ("incident", "IncidentReported")
        | ("relocation", "RelocationOrdered")
        | ("surge", "SurgeRequested") => Reach::one(country_at(data, "country")),
        ("broadcast", "BroadcastIssued") => match data.get("audience") {
            Some(Value::String(s)) if s == "all_agencies" => Reach::Everywhere,
            // `{"country": CC}`; `{"agencies": [...]}` names no country.
            Some(audience @ Value::Object(_)) => Reach::one(country_at(audience, "country")),
            _ => Reach::Nowhere,
        },
        _ => Reach::Nowhere,
    }
}

impl ScopeIndex {
    /// An index that has learnt nothing (before position 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// The last position learnt.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Learns from `event`, the next event of the log (events at or below [`Self::position`]
    /// are ignored: a repeat teaches nothing).
    pub fn learn(&mut self, event: &RecordedEvent) {
        if event.position <= self.position {
            return;
        }
        self.position = event.position;
        let category = event.stream.category().as_str();
        if DECIDED_AT_FIRST.contains(&category) {
            self.streams
                .entry(event.stream.as_str().to_owned())
                .or_insert_with(|| first_reach(category, event));
        } else if category == "station"
            && event.event_type == "DutyStationRegistered"
            && let (Some(station), Some(country)) = (
                event.data.get("station").and_then(Value::as_str),
                country_at(&event.data, "country"),
            )
        {
            self.stations
                .entry(station.to_owned())
                .or_insert((country, event.position));
        }
    }

    /// Where `event` goes. Meant for an event at or below [`Self::position`]; a later one
    /// may be answered from less than the log before it knows (a stream not yet seen reaches
    /// no site).
    pub fn reach(&self, event: &RecordedEvent) -> Reach {
        let data = &event.data;
        match event.stream.category().as_str() {
            c if DECIDED_AT_FIRST.contains(&c) => self
                .streams
                .get(event.stream.as_str())
                .cloned()
                .unwrap_or(Reach::Nowhere),
            "level" if event.event_type == "AreaSecurityLevelSet" => {
                Reach::one(country_at(data, "country"))
            }
            "area" if event.event_type == "AreaRegistered" => {
                Reach::one(country_at(data, "country"))
            }
            "station" if event.event_type == "DutyStationRegistered" => {
                Reach::one(country_at(data, "country"))
            }
            "person" if event.event_type == "PersonRegistered" => Reach::one(
                data.get("duty_station")
                    .and_then(Value::as_str)
                    .and_then(|s| self.stations.get(s))
                    .filter(|(_, learnt_at)| *learnt_at < event.position)
                    .map(|(country, _)| *country),
            ),
            "agency" if event.event_type == "AgencyRegistered" => {
                let countries: Vec<Country> = data
                    .get("countries")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|c| c.as_str().and_then(|c| Country::parse(c).ok()))
                            .collect()
                    })
                    .unwrap_or_default();
                if countries.is_empty() {
                    Reach::Nowhere
                } else {
                    Reach::Countries(countries)
                }
            }
            _ => Reach::Nowhere,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const COUNTRIES: [&str; 3] = ["AF", "SO", "IQ"];

    fn cc(c: &str) -> Country {
        Country::parse(c).unwrap()
    }

    fn event(position: u64, stream: &str, kind: &str, data: Value) -> RecordedEvent {
        serde_json::from_value(json!({
            "id": uuid::Uuid::new_v4(), "stream": stream, "type": kind, "v": 1, "data": data,
            "meta": {}, "position": position, "version": 1,
            "recorded_at": "2026-11-27T02:40:03.123Z",
        }))
        .unwrap()
    }

    fn stream(category: &str, n: u8) -> String {
        format!("{category}-00000000-0000-0000-0000-0000000000{n:02x}")
    }

    /// One event of a generated log, with the country it is truly about (`None`: no site's
    /// business, `Some(None)`: every site's).
    #[derive(Debug, Clone)]
    enum Step {
        Incident { n: u8, country: usize, first: bool },
        Level { country: usize },
        Station { n: u8, country: usize },
        Person { station: u8 },
        Broadcast { n: u8, audience: usize },
        Hostage { country: usize },
        Clearance { country: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4, 0usize..3, any::<bool>()).prop_map(|(n, country, first)| Step::Incident {
                n,
                country,
                first
            }),
            (0usize..3).prop_map(|country| Step::Level { country }),
            (0u8..4, 0usize..3).prop_map(|(n, country)| Step::Station { n, country }),
            (0u8..5).prop_map(|station| Step::Person { station }),
            (0u8..4, 0usize..5).prop_map(|(n, audience)| Step::Broadcast { n, audience }),
            (0usize..3).prop_map(|country| Step::Hostage { country }),
            (0usize..3).prop_map(|country| Step::Clearance { country }),
        ]
    }

    fn to_event(position: u64, s: &Step) -> RecordedEvent {
        match s {
            Step::Incident { n, country, first } => {
                let (kind, data) = if *first {
                    ("IncidentReported", json!({"country": COUNTRIES[*country]}))
                } else {
                    ("IncidentVerified", json!({"by": "duty"}))
                };
                event(position, &stream("incident", *n), kind, data)
            }
            Step::Level { country } => event(
                position,
                &stream("level", 0),
                "AreaSecurityLevelSet",
                json!({"area": "X", "country": COUNTRIES[*country], "level": 3}),
            ),
            Step::Station { n, country } => event(
                position,
                &stream("station", *n),
                "DutyStationRegistered",
                json!({"station": format!("S{n}"), "country": COUNTRIES[*country], "area": "X"}),
            ),
            Step::Person { station } => event(
                position,
                &stream("person", 0),
                "PersonRegistered",
                json!({"person": "P1", "duty_station": format!("S{station}"), "nationality": "KE"}),
            ),
            Step::Broadcast { n, audience } => {
                let audience = match audience {
                    0..=2 => json!({"country": COUNTRIES[*audience]}),
                    3 => json!("all_agencies"),
                    _ => json!({"agencies": ["wfp"]}),
                };
                event(
                    position,
                    &stream("broadcast", *n),
                    "BroadcastIssued",
                    json!({"audience": audience}),
                )
            }
            Step::Hostage { country } => event(
                position,
                &stream("hostage", 0),
                "HostageCaseOpened",
                json!({"country": COUNTRIES[*country]}),
            ),
            Step::Clearance { country } => event(
                position,
                &stream("clearance", 0),
                "ClearanceRequested",
                json!({"legs": [{"country": COUNTRIES[*country]}]}),
            ),
        }
    }

    /// The model: the countries each step truly belongs to, from the log before it.
    fn model(steps: &[Step]) -> Vec<Reach> {
        let mut incidents: HashMap<u8, Reach> = HashMap::new();
        let mut broadcasts: HashMap<u8, Reach> = HashMap::new();
        let mut stations: HashMap<u8, usize> = HashMap::new();
        steps
            .iter()
            .map(|s| match s {
                Step::Incident { n, country, first } => incidents
                    .entry(*n)
                    .or_insert(if *first {
                        Reach::Countries(vec![cc(COUNTRIES[*country])])
                    } else {
                        Reach::Nowhere
                    })
                    .clone(),
                Step::Level { country } => Reach::Countries(vec![cc(COUNTRIES[*country])]),
                Step::Station { n, country } => {
                    stations.entry(*n).or_insert(*country);
                    Reach::Countries(vec![cc(COUNTRIES[*country])])
                }
                Step::Person { station } => stations.get(station).map_or(Reach::Nowhere, |c| {
                    Reach::Countries(vec![cc(COUNTRIES[*c])])
                }),
                Step::Broadcast { n, audience } => broadcasts
                    .entry(*n)
                    .or_insert(match audience {
                        0..=2 => Reach::Countries(vec![cc(COUNTRIES[*audience])]),
                        3 => Reach::Everywhere,
                        _ => Reach::Nowhere,
                    })
                    .clone(),
                Step::Hostage { .. } | Step::Clearance { .. } => Reach::Nowhere,
            })
            .collect()
    }

    proptest! {
        /// Live (learn, then ask) and later (learn everything, then ask) give every event the
        /// same reach, which is the model's: a site gets its country's events and those for
        /// every agency, never another country's, never a hostage case or a clearance.
        #[test]
        fn the_live_feed_and_a_later_read_agree_with_the_model(
            steps in proptest::collection::vec(step(), 1..120)
        ) {
            // A stream is reported once: a later "first" event of it is a follow-up.
            let mut reported = std::collections::HashSet::new();
            let steps: Vec<Step> = steps
                .into_iter()
                .map(|s| match s {
                    Step::Incident { n, country, first } => Step::Incident {
                        n,
                        country,
                        first: first && reported.insert(n),
                    },
                    other => other,
                })
                .collect();
            let events: Vec<RecordedEvent> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| to_event(i as u64 + 1, s))
                .collect();
            let expected = model(&steps);
            let mut live = ScopeIndex::new();
            let mut live_reach = vec![];
            for e in &events {
                live.learn(e);
                live_reach.push(live.reach(e));
            }
            prop_assert_eq!(&live_reach, &expected);
            let later: Vec<Reach> = events.iter().map(|e| live.reach(e)).collect();
            prop_assert_eq!(&later, &expected);
            for (e, r) in events.iter().zip(&expected) {
                for scope in COUNTRIES.map(cc) {
                    let about = e.data.get("country").and_then(Value::as_str);
                    if r.includes(scope) && *r != Reach::Everywhere && about.is_some() {
                        prop_assert_eq!(about, Some(scope.as_str()));
                    }
                }
            }
        }
    }

    #[test]
    fn restricted_and_unknown_categories_reach_no_site() {
        let mut index = ScopeIndex::new();
        let all = [
            event(
                1,
                &stream("hostage", 1),
                "HostageCaseOpened",
                json!({"country": "AF"}),
            ),
            event(
                2,
                &stream("audit", 1),
                "AccessDenied",
                json!({"country": "AF"}),
            ),
            event(
                3,
                &stream("surge_officer", 1),
                "SurgeOfficerReserved",
                json!({"country": "AF"}),
            ),
            event(
                4,
                &stream("whatever", 1),
                "Future",
                json!({"country": "AF"}),
            ),
            event(
                5,
                &stream("level", 1),
                "AreaSecurityLevelSet",
                json!({"country": "nope"}),
            ),
            event(6, &stream("incident", 1), "IncidentVerified", json!({})),
            event(
                7,
                &stream("incident", 1),
                "IncidentReported",
                json!({"country": "AF"}),
            ),
        ];
        for e in &all {
            index.learn(e);
            assert!(!index.reach(e).includes(cc("AF")), "{e:?}");
        }
        let agency = event(
            8,
            &stream("agency", 1),
            "AgencyRegistered",
            json!({"countries": ["AF", "SO"]}),
        );
        index.learn(&agency);
        assert!(index.reach(&agency).includes(cc("SO")));
        assert!(!index.reach(&agency).includes(cc("IQ")));
        assert_eq!(index.position(), 8);
    }
}
