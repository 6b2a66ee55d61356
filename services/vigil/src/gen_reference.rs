//! `vigil gen-reference`: writes a large, realistic-looking reference dataset for
//! `vigil import` (JSON Lines on stdout): areas, duty stations, agencies and personnel.
//!
//! Deterministic for a given `--seed`, so a benchmark can be repeated on the same data.
//! Defaults are the scale of a large organisation: 180 countries, 2,000 duty stations,
//! 150,000 personnel (about one in fifty a security officer). It needs no data directory
//! and no running centre: it only writes.
//!
//! ```sh
//! target/release/vigil gen-reference --personnel 150000 > /tmp/reference.jsonl
//! target/release/vigil import /tmp/reference.jsonl
//! ```

use std::io::{BufWriter, Write};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cli::GenReferenceArgs;

const AGENCIES: [(&str, &str); 12] = [
    ("unicef", "UNICEF"),
    ("wfp", "World Food Programme"),
    ("unhcr", "UNHCR"),
    ("who", "World Health Organization"),
    ("undp", "UNDP"),
    ("ocha", "OCHA"),
    ("undss", "UN Department of Safety and Security"),
    ("iom", "IOM"),
    ("unfpa", "UNFPA"),
    ("fao", "FAO"),
    ("unops", "UNOPS"),
    ("unesco", "UNESCO"),
];

const FIRST: [&str; 20] = [
    "Amina", "Hassan", "Fatima", "Omar", "Grace", "Peter", "Leila", "Samir", "Mariam", "Joseph",
    "Aisha", "David", "Nadia", "Ibrahim", "Sofia", "Daniel", "Zainab", "Kwame", "Ines", "Priya",
];
const LAST: [&str; 20] = [
    "Hassan", "Ali", "Mohamed", "Okafor", "Mensah", "Schmidt", "Haddad", "Nguyen", "Kariuki",
    "Diallo", "Traore", "Petrov", "Silva", "Rahman", "Osei", "Abebe", "Khan", "Garcia", "Novak",
    "Ochieng",
];

/// Writes the dataset `args` describes to `out` as JSON Lines.
pub fn write(args: &GenReferenceArgs, out: impl Write) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Real ISO codes, skipping the first few (uninhabited and tiny territories come first
    // alphabetically often enough not to matter for a load test).
    let countries: Vec<&str> = events::validate::COUNTRY_CODES
        .iter()
        .copied()
        .filter(|c| !matches!(*c, "AQ" | "BV" | "HM" | "TF" | "UM"))
        .take(args.countries.clamp(1, 240))
        .collect();
    let mut out = BufWriter::new(out);
    let mut line = |v: serde_json::Value| writeln!(out, "{v}");
    // Personnel land on random stations, so every agency is present in every country.
    for (a, n) in AGENCIES {
        line(json!({"kind": "agency", "agency": a, "name": n, "countries": countries}))?;
    }
    let area_id = |c: &str, i: usize| format!("{c}-A{i:02}");
    for c in &countries {
        for i in 0..args.areas_per_country.max(1) {
            line(
                json!({"kind": "area", "area": area_id(c, i), "country": c, "name": format!("{c} area {i}")}),
            )?;
        }
    }
    let mut stations = Vec::new();
    for s in 0..args.stations.max(1) {
        let c = countries[s % countries.len()];
        let area = area_id(c, rng.random_range(0..args.areas_per_country.max(1)));
        let id = format!("{c}-S{s:04}");
        line(
            json!({"kind": "duty_station", "station": id, "country": c, "area": area,
            "name": format!("Station {s}"), "lat": rng.random_range(-60.0..70.0f64),
            "lon": rng.random_range(-170.0..170.0f64)}),
        )?;
        stations.push(id);
    }
    for p in 0..args.personnel {
        let officer = rng.random_ratio(1, 50);
        let agency = if officer {
            "undss"
        } else {
            AGENCIES[rng.random_range(0..AGENCIES.len())].0
        };
        line(json!({"kind": "person", "person": format!("P-{p:06}"),
            "name": format!("{} {}", FIRST[rng.random_range(0..FIRST.len())], LAST[rng.random_range(0..LAST.len())]),
            "agency": agency, "nationality": countries[rng.random_range(0..countries.len())],
            "duty_station": stations[rng.random_range(0..stations.len())],
            "dependants": rng.random_range(0..4u16), "security_officer": officer,
            "essential": officer || rng.random_ratio(1, 5)}))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn small(seed: u64) -> GenReferenceArgs {
        GenReferenceArgs {
            countries: 10,
            areas_per_country: 2,
            stations: 30,
            personnel: 500,
            seed,
        }
    }

    fn generated(args: &GenReferenceArgs) -> String {
        let mut out = Vec::new();
        write(args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn what_it_writes_is_what_vigil_import_accepts() {
        let text = generated(&small(1));
        // 12 agencies, 10 × 2 areas, 30 stations, 500 personnel.
        assert_eq!(text.lines().count(), 12 + 20 + 30 + 500);
        let records = crate::import::parse(&text).unwrap();
        assert_eq!(records.len(), 12 + 20 + 30 + 500);
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes_and_another_does_not() {
        assert_eq!(generated(&small(7)), generated(&small(7)));
        assert_ne!(generated(&small(7)), generated(&small(8)));
    }
}
