//! Realistic domain events for the board benchmarks (`fanout`, `replay`).
//!
//! The mix is what a situation board sees on a busy day, spread over 50 countries:
//! - `IncidentReported` (a new `incident-<uuid>` stream each): category, severity 1–5 (mostly
//!   2–3), a one-line title, when it happened, a location near the country (80 %), a reporter;
//! - `AreaSecurityLevelSet` v2 on one `level-<uuid>` stream per area (three areas per
//!   country), the level moving a step up or down from the area's last one, with a reason;
//! - `IncidentClosed` of one of the incidents this generator opened, so that the number of open
//!   incidents (and the board's memory) stays bounded as on a real board (~[`MAX_OPEN`]).
//!
//! Every event is built from the typed structs of `events::domain` and validated, so the store
//! and the board read them exactly as they would read a field officer's report. Randomness is
//! a small seeded xorshift: the same seed gives the same sequence (ids apart).

use std::collections::HashMap;

use anyhow::Context as _;
use events::domain::DomainEvent;
use events::domain::incident::{IncidentCategory, IncidentClosed, IncidentReported, Location};
use events::domain::level::AreaSecurityLevelSet;
use events::envelope::{Category, Meta, NewEvent, StreamName};
use events::validate::{Country, SecurityLevel, Severity};
use time::OffsetDateTime;
use uuid::Uuid;

/// Open incidents above which the generator closes one for every new report.
pub const MAX_OPEN: usize = 4000;

/// Countries (ISO 3166-1 alpha-2), a place name and an approximate centre (lat, lon).
const COUNTRIES: [(&str, &str, f64, f64); 50] = [
    ("AF", "Kabul", 34.5, 69.2),
    ("BD", "Cox's Bazar", 21.4, 92.0),
    ("BF", "Ouagadougou", 12.4, -1.5),
    ("BI", "Bujumbura", -3.4, 29.4),
    ("CD", "Goma", -1.7, 29.2),
    ("CF", "Bangui", 4.4, 18.6),
    ("CI", "Abidjan", 5.3, -4.0),
    ("CM", "Maroua", 10.6, 14.3),
    ("CO", "Cúcuta", 7.9, -72.5),
    ("DZ", "Algiers", 36.8, 3.1),
    ("EG", "Cairo", 30.0, 31.2),
    ("ER", "Asmara", 15.3, 38.9),
    ("ET", "Mekelle", 13.5, 39.5),
    ("GN", "Conakry", 9.6, -13.6),
    ("HN", "Tegucigalpa", 14.1, -87.2),
    ("HT", "Port-au-Prince", 18.6, -72.3),
    ("IQ", "Mosul", 36.3, 43.1),
    ("IR", "Tehran", 35.7, 51.4),
    ("KE", "Nairobi", -1.3, 36.8),
    ("LB", "Beirut", 33.9, 35.5),
    ("LK", "Colombo", 6.9, 79.9),
    ("LR", "Monrovia", 6.3, -10.8),
    ("LY", "Tripoli", 32.9, 13.2),
    ("MA", "Rabat", 34.0, -6.8),
    ("ML", "Bamako", 12.6, -8.0),
    ("MM", "Sittwe", 20.1, 92.9),
    ("MX", "Culiacán", 24.8, -107.4),
    ("MZ", "Pemba", -13.0, 40.5),
    ("NE", "Niamey", 13.5, 2.1),
    ("NG", "Maiduguri", 11.8, 13.2),
    ("NP", "Kathmandu", 27.7, 85.3),
    ("PH", "Marawi", 8.0, 124.3),
    ("PK", "Peshawar", 34.0, 71.6),
    ("PS", "Gaza", 31.5, 34.5),
    ("RW", "Kigali", -1.9, 30.1),
    ("SD", "El Fasher", 13.6, 25.3),
    ("SL", "Freetown", 8.5, -13.2),
    ("SN", "Dakar", 14.7, -17.5),
    ("SO", "Mogadishu", 2.0, 45.3),
    ("SS", "Juba", 4.9, 31.6),
    ("SY", "Aleppo", 36.2, 37.2),
    ("TD", "N'Djamena", 12.1, 15.0),
    ("TN", "Tunis", 36.8, 10.2),
    ("TR", "Gaziantep", 37.1, 37.4),
    ("UA", "Kharkiv", 50.0, 36.2),
    ("UG", "Gulu", 2.8, 32.3),
    ("VE", "Caracas", 10.5, -66.9),
    ("YE", "Aden", 12.8, 45.0),
    ("ZW", "Harare", -17.8, 31.0),
    ("LS", "Maseru", -29.3, 27.5),
];

/// Areas per country whose security level is set (`<CC>-CAPITAL`, `<CC>-NORTH`, `<CC>-SOUTH`).
const AREAS: [&str; 3] = ["CAPITAL", "NORTH", "SOUTH"];

const CATEGORIES: [(IncidentCategory, &[&str]); 7] = [
    (
        IncidentCategory::ArmedConflict,
        &[
            "Exchange of fire reported on the main supply route",
            "Shelling reported close to the humanitarian hub",
            "Armed clashes between two groups near the market",
        ],
    ),
    (
        IncidentCategory::Terrorism,
        &[
            "IED detonation reported on the airport road",
            "Suspicious vehicle reported near the UN compound",
            "Complex attack on a hotel, situation evolving",
        ],
    ),
    (
        IncidentCategory::Crime,
        &[
            "Armed robbery of an NGO vehicle at a checkpoint",
            "Carjacking of a staff vehicle in the city centre",
            "Burglary at a staff residence overnight",
        ],
    ),
    (
        IncidentCategory::CivilUnrest,
        &[
            "Demonstration blocking the road to the office",
            "Riot reported after the election announcement",
            "Protest crowd gathering at the ministry",
        ],
    ),
    (
        IncidentCategory::Hazard,
        &[
            "Flash flooding cuts the road north of the city",
            "Fire at a fuel depot, smoke over the district",
            "Earthquake felt, buildings damaged in the old town",
        ],
    ),
    (
        IncidentCategory::RoadTraffic,
        &[
            "Road traffic accident involving a staff vehicle",
            "Convoy vehicle overturned on the mountain road",
            "Collision at the border crossing queue",
        ],
    ),
    (
        IncidentCategory::Other,
        &[
            "Communications outage across the sub-office",
            "Checkpoint closed without notice on the ring road",
            "Staff member unaccounted for after the curfew",
        ],
    ),
];

const LEVEL_REASONS: [&str; 4] = [
    "Sustained attacks on the main supply route over the last week",
    "Armed groups withdrew; no incidents reported for fourteen days",
    "Curfew declared after clashes near the ministry",
    "Monthly review by the security management team",
];

/// A small, fast, seeded pseudo-random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random UUID (version 4 layout).
    pub fn uuid(&mut self) -> Uuid {
        let hi = self.next_u64() as u128;
        let lo = self.next_u64() as u128;
        uuid::Builder::from_random_bytes(((hi << 64) | lo).to_be_bytes()).into_uuid()
    }
}

/// What the generator made so far, by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mix {
    /// `IncidentReported`.
    pub reported: u64,
    /// `IncidentClosed`.
    pub closed: u64,
    /// `AreaSecurityLevelSet`.
    pub levels: u64,
}

/// Makes the event stream described at the top of this module.
pub struct Generator {
    rng: Rng,
    countries: Vec<(Country, &'static str, f64, f64)>,
    incident: Category,
    level: Category,
    /// Open incidents this generator reported: stream id and country index.
    open: Vec<Uuid>,
    /// Per area (country index, area index): its stream and last level.
    areas: HashMap<(usize, usize), (StreamName, SecurityLevel)>,
    mix: Mix,
}

/// Picks one element of a non-empty array.
fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> anyhow::Result<&'a T> {
    items
        .get(rng.below(items.len()))
        .context("picking from an empty list")
}

impl Generator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> anyhow::Result<Self> {
        let countries = COUNTRIES
            .iter()
            .map(|&(code, place, lat, lon)| Ok((Country::parse(code)?, place, lat, lon)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            rng: Rng::new(seed),
            countries,
            incident: Category::parse("incident")?,
            level: Category::parse("level")?,
            open: Vec::new(),
            areas: HashMap::new(),
            mix: Mix::default(),
        })
    }

    /// The number of countries events are spread over.
    pub fn country_count(&self) -> usize {
        self.countries.len()
    }

    /// What has been made so far.
    pub fn mix(&self) -> Mix {
        self.mix
    }

    /// Open incidents (reported and not yet closed by this generator).
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// The next event and the stream it goes to; `now` is the time the event is made (its
    /// `occurred_at` is up to two hours before).
    pub fn next_event(&mut self, now: OffsetDateTime) -> anyhow::Result<(StreamName, NewEvent)> {
        let r = self.rng.unit();
        if r < 0.15 {
            return self.level_set();
        }
        let close = !self.open.is_empty() && (self.open.len() >= MAX_OPEN || r < 0.25);
        if close {
            self.close()
        } else {
            self.report(now)
        }
    }

    fn meta(actor: String, role: &str) -> Meta {
        Meta {
            actor: Some(actor),
            role: Some(role.to_owned()),
            source: Some("bench".to_owned()),
            ..Meta::default()
        }
    }

    fn report(&mut self, now: OffsetDateTime) -> anyhow::Result<(StreamName, NewEvent)> {
        let ci = self.rng.below(self.countries.len());
        let &(country, place, lat, lon) = self.countries.get(ci).context("no country")?;
        let (category, titles) = *pick(&mut self.rng, &CATEGORIES)?;
        let title = format!("{} ({place})", pick(&mut self.rng, titles)?);
        // Mostly 2–3, sometimes 1, 4 or 5.
        let severity = match self.rng.below(20) {
            0..=2 => 1,
            3..=9 => 2,
            10..=15 => 3,
            16..=18 => 4,
            _ => 5,
        };
        let minutes_ago = self.rng.below(120) as i64;
        let occurred_at = (now - time::Duration::minutes(minutes_ago))
            .replace_nanosecond(0)
            .context("truncating a timestamp")?;
        let location = (self.rng.unit() < 0.8).then(|| Location {
            lat: ((lat + (self.rng.unit() - 0.5) * 2.0) * 1e5).round() / 1e5,
            lon: ((lon + (self.rng.unit() - 0.5) * 2.0) * 1e5).round() / 1e5,
            accuracy_m: Some((50 + self.rng.below(2000)) as f64),
        });
        let reporter = format!(
            "fo.{}.{}",
            country.as_str().to_ascii_lowercase(),
            1 + self.rng.below(40)
        );
        let event = DomainEvent::from(IncidentReported {
            country,
            category,
            severity: Severity::new(severity)?,
            title,
            occurred_at,
            location,
            duty_station: None,
            description: None,
            casualties: None,
            reporter: reporter.clone(),
        });
        let id = self.rng.uuid();
        let stream = StreamName::new(self.incident.clone(), id);
        let new = event.try_to_new_event(self.rng.uuid(), Self::meta(reporter, "field_officer"))?;
        self.open.push(id);
        self.mix.reported += 1;
        Ok((stream, new))
    }

    fn close(&mut self) -> anyhow::Result<(StreamName, NewEvent)> {
        let i = self.rng.below(self.open.len());
        let id = self.open.swap_remove(i);
        let event = DomainEvent::from(IncidentClosed {
            reason: "Resolved: no further threat reported by the field".to_owned(),
        });
        let new = event.try_to_new_event(
            self.rng.uuid(),
            Self::meta("duty.officer".into(), "duty_officer"),
        )?;
        self.mix.closed += 1;
        Ok((StreamName::new(self.incident.clone(), id), new))
    }

    fn level_set(&mut self) -> anyhow::Result<(StreamName, NewEvent)> {
        let ci = self.rng.below(self.countries.len());
        let ai = self.rng.below(AREAS.len());
        let &(country, _, _, _) = self.countries.get(ci).context("no country")?;
        let area_name = AREAS.get(ai).context("no area")?;
        let area = format!("{}-{area_name}", country.as_str());
        let step = self.rng.below(3) as i64 - 1; // −1, 0 or +1
        let (stream, previous) = match self.areas.get(&(ci, ai)) {
            Some((stream, level)) => (stream.clone(), Some(*level)),
            None => (StreamName::new(self.level.clone(), self.rng.uuid()), None),
        };
        let from = previous.map_or(1 + self.rng.below(5) as i64, |l| i64::from(l.get()));
        let level = SecurityLevel::new((from + step).clamp(1, 6))?;
        let event = DomainEvent::from(AreaSecurityLevelSet {
            area,
            country,
            level,
            reason: pick(&mut self.rng, &LEVEL_REASONS)?.to_string(),
            previous_level: previous,
        });
        let new = event.try_to_new_event(
            self.rng.uuid(),
            Self::meta("security.advisor".into(), "security_advisor"),
        )?;
        self.areas.insert((ci, ai), (stream.clone(), level));
        self.mix.levels += 1;
        Ok((stream, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_and_the_open_set_stays_bounded() {
        let mut g = Generator::new(7).unwrap();
        let now = OffsetDateTime::now_utc();
        for _ in 0..20_000 {
            let (stream, ev) = g.next_event(now).unwrap();
            let decoded = DomainEvent::decode_data(&ev.event_type, ev.v, ev.data.clone());
            assert!(decoded.is_ok(), "{decoded:?}");
            let cat = stream.category().as_str();
            assert!(cat == "incident" || cat == "level", "{cat}");
        }
        let mix = g.mix();
        assert!(
            mix.reported > 0 && mix.closed > 0 && mix.levels > 0,
            "{mix:?}"
        );
        assert!(g.open_incidents() <= MAX_OPEN);
        assert_eq!(g.country_count(), 50);
    }
}
