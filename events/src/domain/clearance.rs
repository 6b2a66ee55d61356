//! Travel security clearance events (stream category `clearance`): a request with its
//! itinerary, the decision, and arrivals and departures on the way.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::MAX_REASON;
use crate::validate::{
    Country, ValidationError, count, id, non_blank, opt_id, opt_non_blank, timestamp,
};

/// The stream of clearance `id` (the id of the command that created it): `clearance-<id>`.
pub fn stream_for(id: uuid::Uuid) -> crate::StreamName {
    // "clearance" is a valid category (lower-case letters).
    crate::StreamName::new(crate::Category("clearance".to_owned()), id)
}

/// Most legs in one itinerary.
pub const MAX_LEGS: usize = 20;

// Dates are written `YYYY-MM-DD`.
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// One leg of a journey: a stay in a country (or an area of it) between two dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leg {
    /// The country.
    pub country: Country,
    /// The area, if narrower than the country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// First day, `YYYY-MM-DD`.
    #[serde(with = "iso_date")]
    pub from: Date,
    /// Last day, `YYYY-MM-DD`, not before `from`.
    #[serde(with = "iso_date")]
    pub to: Date,
}

impl Leg {
    /// Checks the area and that the dates are in order.
    pub fn validate(&self) -> Result<(), ValidationError> {
        opt_id("area", self.area.as_deref())?;
        if self.from > self.to {
            return Err(ValidationError::new(
                "to",
                format!("{} is before from ({})", self.to, self.from),
            ));
        }
        Ok(())
    }
}

/// A traveller asked for clearance for an itinerary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearanceRequested {
    /// The person travelling.
    pub traveller: String,
    /// The legs, 1 to 20.
    pub itinerary: Vec<Leg>,
    /// Why they travel, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl ClearanceRequested {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("traveller", &self.traveller)?;
        count("itinerary", self.itinerary.len(), 1, MAX_LEGS)?;
        for (i, leg) in self.itinerary.iter().enumerate() {
            leg.validate()
                .map_err(|e| e.at(&format!("itinerary[{i}]")))?;
        }
        opt_non_blank("purpose", self.purpose.as_deref(), MAX_REASON)
    }
}

/// The clearance was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearanceApproved {
    /// The user who approved it.
    pub by: String,
}

impl ClearanceApproved {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)
    }
}

/// The clearance was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearanceRefused {
    /// The user who refused it.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl ClearanceRefused {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("by", &self.by)?;
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

/// The traveller arrived in a country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArrivalRecorded {
    /// The country.
    pub country: Country,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl ArrivalRecorded {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        timestamp("at", self.at)
    }
}

/// The traveller left a country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartureRecorded {
    /// The country.
    pub country: Country,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl DepartureRecorded {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        timestamp("at", self.at)
    }
}

/// Where one clearance stands, as far as "who is where" is concerned: the one rule both the
/// clearances service (its lists) and the relocation service (the roll call's headcount) use.
///
/// # The presence rule
/// A traveller counts as present in a country (or an area of it) on a date when:
/// 1. the clearance is approved (not requested, not refused);
/// 2. a leg of the itinerary covers that country, and that area if one is asked and the leg
///    names one (a leg without an area covers the whole country), with `from <= date <= to`;
/// 3. their latest recorded movement in that country on or before that date is not a
///    departure (approved travel counts as planned presence without an arrival; a departure
///    ends it; a later arrival starts it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Travel {
    /// Who travels.
    pub traveller: String,
    /// Where and when.
    pub itinerary: Vec<Leg>,
    /// Approved.
    pub approved: bool,
    /// Refused.
    pub refused: bool,
    /// Arrivals (`true`) and departures (`false`), by country, in the order recorded.
    pub movements: Vec<(Country, Date, bool)>,
}

impl Travel {
    /// Folds one event of the clearance's stream into its state.
    pub fn apply(state: &mut Option<Travel>, event: &super::DomainEvent) {
        use super::DomainEvent as E;
        match event {
            E::ClearanceRequested(r) if state.is_none() => {
                *state = Some(Travel {
                    traveller: r.traveller.clone(),
                    itinerary: r.itinerary.clone(),
                    approved: false,
                    refused: false,
                    movements: vec![],
                });
            }
            E::ClearanceApproved(_) => {
                if let Some(t) = state.as_mut().filter(|t| !t.refused) {
                    t.approved = true;
                }
            }
            E::ClearanceRefused(_) => {
                if let Some(t) = state.as_mut().filter(|t| !t.approved) {
                    t.refused = true;
                }
            }
            E::ArrivalRecorded(a) => {
                if let Some(t) = state.as_mut() {
                    t.movements.push((a.country, a.at.date(), true));
                }
            }
            E::DepartureRecorded(d) => {
                if let Some(t) = state.as_mut() {
                    t.movements.push((d.country, d.at.date(), false));
                }
            }
            _ => {}
        }
    }

    /// Whether the traveller is present in `country` (and `area`) on `on`: see the rule above.
    pub fn present(&self, country: Country, area: Option<&str>, on: Date) -> bool {
        let covered = self.itinerary.iter().any(|leg| {
            leg.country == country
                && match (area, leg.area.as_deref()) {
                    (Some(asked), Some(leg_area)) => asked == leg_area,
                    _ => true,
                }
                && leg.from <= on
                && on <= leg.to
        });
        let gone = self
            .movements
            .iter()
            .filter(|(c, d, _)| *c == country && *d <= on)
            .max_by_key(|(_, d, _)| *d)
            .is_some_and(|(_, _, arrived)| !arrived);
        self.approved && covered && !gone
    }
}

// --- What the clearances service answers (`GET /api/v1/clearances` and `/{id}`).

/// Where a clearance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClearanceStatus {
    /// Asked for, not yet decided.
    Requested,
    /// Granted: the traveller may go (and counts as planned presence).
    Approved,
    /// Refused, with a reason; final.
    Refused,
}

impl ClearanceStatus {
    /// The status as written in answers and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            ClearanceStatus::Requested => "requested",
            ClearanceStatus::Approved => "approved",
            ClearanceStatus::Refused => "refused",
        }
    }
}

/// Whether a movement is an arrival or a departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClearanceMovementKind {
    /// The traveller arrived in the country.
    Arrival,
    /// The traveller left the country.
    Departure,
}

/// An arrival or a departure, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClearanceMovement {
    /// Arrival or departure.
    pub kind: ClearanceMovementKind,
    /// The country.
    pub country: Country,
    /// When, as the recorder wrote it (its calendar date is the local date).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A clearance as its stream tells it: what `GET /api/v1/clearances/{id}` shows and each item
/// of the list. The clearances service folds it (its aggregate is this record with the rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Clearance {
    /// The id of the request (the stream is `clearance-<id>`).
    pub id: uuid::Uuid,
    /// The person travelling (personnel reference).
    pub traveller: String,
    /// The legs of the journey.
    pub itinerary: Vec<Leg>,
    /// Why they travel, if given.
    pub purpose: Option<String>,
    /// Where it is in its life.
    pub status: ClearanceStatus,
    /// Who asked (from the request's `meta`).
    pub requested_by: Option<String>,
    /// Who approved or refused it.
    pub decided_by: Option<String>,
    /// Why it was refused.
    pub refusal_reason: Option<String>,
    /// Arrivals and departures, in the order recorded.
    pub movements: Vec<ClearanceMovement>,
    /// Log position of the request.
    pub requested_position: u64,
    /// When the centre received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;
    use std::fmt::Debug;
    use time::macros::{date, datetime};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(e: &T) {
        let back: T = serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }

    fn travel(approved: bool, legs: Vec<Leg>, movements: Vec<(Country, Date, bool)>) -> Travel {
        Travel {
            traveller: "P-1".into(),
            itinerary: legs,
            approved,
            refused: false,
            movements,
        }
    }

    #[test]
    fn presence_follows_approval_legs_and_movements() {
        let so = Country::parse("SO").unwrap();
        let ke = Country::parse("KE").unwrap();
        let leg = Leg {
            country: so,
            area: Some("SOM-BAN".into()),
            from: date!(2026 - 11 - 20),
            to: date!(2026 - 11 - 30),
        };
        let t = travel(true, vec![leg.clone()], vec![]);
        assert!(
            t.present(so, None, date!(2026 - 11 - 27)),
            "planned presence counts"
        );
        assert!(t.present(so, Some("SOM-BAN"), date!(2026 - 11 - 27)));
        assert!(
            !t.present(so, Some("SOM-BAY"), date!(2026 - 11 - 27)),
            "another area"
        );
        assert!(!t.present(so, None, date!(2026 - 12 - 01)), "after the leg");
        assert!(
            !t.present(ke, None, date!(2026 - 11 - 27)),
            "another country"
        );
        assert!(!travel(false, vec![leg.clone()], vec![]).present(so, None, date!(2026 - 11 - 27)));
        let left = travel(
            true,
            vec![leg.clone()],
            vec![(so, date!(2026 - 11 - 25), false)],
        );
        assert!(left.present(so, None, date!(2026 - 11 - 24)));
        assert!(
            !left.present(so, None, date!(2026 - 11 - 25)),
            "departed that day"
        );
        let back = travel(
            true,
            vec![leg],
            vec![
                (so, date!(2026 - 11 - 25), false),
                (so, date!(2026 - 11 - 26), true),
            ],
        );
        assert!(
            back.present(so, None, date!(2026 - 11 - 27)),
            "arrived again"
        );
    }

    proptest::proptest! {
        /// The rule against a plain model: walk the movements in date order (recorded order
        /// within a day) and keep the last one; check coverage leg by leg.
        #[test]
        fn presence_matches_a_simple_model(
            approved: bool,
            legs in proptest::collection::vec((0usize..2, proptest::option::of(0usize..2), 0i64..20, 0i64..10), 0..4),
            moves in proptest::collection::vec((0usize..2, 0i64..30, proptest::bool::ANY), 0..6),
            asked_country in 0usize..2,
            asked_area in proptest::option::of(0usize..2),
            day in 0i64..30,
        ) {
            let countries = [Country::parse("SO").unwrap(), Country::parse("KE").unwrap()];
            let areas = ["A1", "A2"];
            let start = date!(2026 - 11 - 01);
            let legs: Vec<Leg> = legs.into_iter().map(|(c, a, from, len)| Leg {
                country: countries[c],
                area: a.map(|a| areas[a].to_owned()),
                from: start + time::Duration::days(from),
                to: start + time::Duration::days(from + len),
            }).collect();
            let movements: Vec<(Country, Date, bool)> = moves.into_iter()
                .map(|(c, d, arrived)| (countries[c], start + time::Duration::days(d), arrived))
                .collect();
            let on = start + time::Duration::days(day);
            let country = countries[asked_country];
            let area = asked_area.map(|a| areas[a]);
            let t = travel(approved, legs.clone(), movements.clone());

            let mut covered = false;
            for leg in &legs {
                let area_ok = area.is_none() || leg.area.is_none() || leg.area.as_deref() == area;
                if leg.country == country && area_ok && leg.from <= on && on <= leg.to {
                    covered = true;
                }
            }
            let mut sorted: Vec<_> = movements.iter().filter(|m| m.0 == country && m.1 <= on).collect();
            sorted.sort_by_key(|m| m.1); // stable: recorded order within a day
            let mut inside = true;
            for m in sorted {
                inside = m.2;
            }
            proptest::prop_assert_eq!(t.present(country, area, on), approved && covered && inside);
        }
    }

    #[test]
    fn clearance_events_are_checked_and_round_trip() {
        let leg = |c: &str, from, to| Leg {
            country: Country::parse(c).unwrap(),
            area: None,
            from,
            to,
        };
        let req = ClearanceRequested {
            traveller: "t.1".into(),
            itinerary: vec![
                leg("KE", date!(2024 - 07 - 01), date!(2024 - 07 - 02)),
                leg("SO", date!(2024 - 07 - 02), date!(2024 - 07 - 09)),
            ],
            purpose: Some("assessment mission".into()),
        };
        assert!(req.validate().is_ok());
        round_trip(&req);
        assert_eq!(
            serde_json::to_value(&req).unwrap()["itinerary"][0]["from"],
            "2024-07-01"
        );

        let backwards = ClearanceRequested {
            itinerary: vec![leg("SO", date!(2024 - 07 - 09), date!(2024 - 07 - 02))],
            ..req.clone()
        };
        assert_eq!(
            backwards.validate().unwrap_err().to_string(),
            "itinerary[0].to: 2024-07-02 is before from (2024-07-09)"
        );
        let empty = ClearanceRequested {
            itinerary: vec![],
            ..req.clone()
        };
        assert_eq!(empty.validate().unwrap_err().field, "itinerary");
        let long = ClearanceRequested {
            itinerary: vec![req.itinerary[0].clone(); 21],
            ..req
        };
        assert_eq!(long.validate().unwrap_err().field, "itinerary");
        let bad_date = json!({"traveller": "t", "itinerary": [
            {"country": "SO", "from": "2024-02-30", "to": "2024-03-01"}]});
        assert!(serde_json::from_value::<ClearanceRequested>(bad_date).is_err());

        let at = datetime!(2024-07-02 09:30 UTC);
        round_trip(&ClearanceApproved { by: "sa.1".into() });
        round_trip(&ClearanceRefused {
            by: "sa.1".into(),
            reason: "level 6".into(),
        });
        round_trip(&ArrivalRecorded {
            country: Country::parse("SO").unwrap(),
            at,
        });
        round_trip(&DepartureRecorded {
            country: Country::parse("KE").unwrap(),
            at,
        });
    }
}
