//! Who counts as present where: the rule that turns travel clearances into a headcount (the
//! one a relocation order starts from). One pure function, [`present`], reading only the
//! status, the itinerary and the movements of a clearance, all made of `events` types.
//!
//! # The presence rule
//! A traveller counts as present in a country (or an area of it) on a date `on` when all of
//! these hold:
//! 1. **approved** — the clearance is approved (a request still waiting, or a refusal, puts
//!    nobody anywhere);
//! 2. **covered** — a leg of the itinerary is in that country with `from <= on <= to`, and,
//!    when an area is asked, the leg either names that same area or names no area (a leg
//!    without an area covers the whole country; a leg naming an area covers only that area
//!    when an area is asked, and counts for the country when none is);
//! 3. **not departed** — the latest movement recorded in that country dated on or before
//!    `on` is not a departure. An arrival is not required: approved travel counts as
//!    planned presence. A departure ends it from the day it is dated, that day included (for
//!    a headcount "right now", someone who left today is not there); an arrival recorded
//!    after it (the journey comes back through the country) starts it again. Movements are
//!    compared by the calendar date of their `at` as written (the local date the officer
//!    recorded); among movements of the same date the one recorded last wins.
//!
//! Movements in other countries never matter: leaving Kenya says nothing about Somalia.
//!
//! The rule is written once, as `events::domain::clearance::Travel::present`, which the
//! relocation service also uses for its roll calls, so the clearance lists and the roll calls
//! never disagree on who is where; the property test here checks it against a day-by-day
//! model.

use events::domain::clearance::Travel;
use events::validate::Country;
use time::Date;

use crate::clearance::{ClearanceState, MovementKind, Status};

/// Whether the traveller of `clearance` counts as present in `country` (and `area`, if
/// given) on `on`: see the module's rule. The rule itself is written once, in
/// `events::domain::clearance::Travel::present`; this only hands it the clearance.
pub fn present(clearance: &ClearanceState, country: Country, area: Option<&str>, on: Date) -> bool {
    let travel = Travel {
        traveller: clearance.traveller.clone(),
        itinerary: clearance.itinerary.clone(),
        approved: clearance.status == Status::Approved,
        refused: clearance.status == Status::Refused,
        movements: clearance
            .movements
            .iter()
            .map(|m| (m.country, m.at.date(), m.kind == MovementKind::Arrival))
            .collect(),
    };
    travel.present(country, area, on)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clearance::Movement;
    use events::aggregate::Aggregate;
    use events::domain::DomainEvent;
    use events::domain::clearance::{
        ArrivalRecorded, ClearanceApproved, ClearanceRefused, ClearanceRequested,
        DepartureRecorded, Leg, Travel,
    };
    use events::{Meta, RecordedEvent};
    use proptest::prelude::*;
    use time::macros::{date, datetime};
    use time::{OffsetDateTime, UtcOffset};
    use uuid::Uuid;

    fn so() -> Country {
        Country::parse("SO").unwrap()
    }

    fn ke() -> Country {
        Country::parse("KE").unwrap()
    }

    fn leg(country: Country, area: Option<&str>, from: Date, to: Date) -> Leg {
        Leg {
            country,
            area: area.map(str::to_owned),
            from,
            to,
        }
    }

    fn clearance(status: Status, itinerary: Vec<Leg>, movements: Vec<Movement>) -> ClearanceState {
        ClearanceState(events::domain::clearance::Clearance {
            id: Uuid::from_u128(1),
            traveller: "P-1".into(),
            itinerary,
            purpose: None,
            status,
            requested_by: None,
            decided_by: None,
            refusal_reason: None,
            movements,
            requested_position: 1,
            requested_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            version: 1,
        })
    }

    fn moved(kind: MovementKind, country: Country, at: OffsetDateTime) -> Movement {
        Movement { kind, country, at }
    }

    fn banaadir_week() -> Vec<Leg> {
        vec![leg(
            so(),
            Some("SOM-BAN"),
            date!(2026 - 11 - 20),
            date!(2026 - 11 - 30),
        )]
    }

    #[test]
    fn approved_travel_counts_as_planned_presence() {
        let c = clearance(Status::Approved, banaadir_week(), vec![]);
        let on = date!(2026 - 11 - 25);
        assert!(present(&c, so(), None, on), "no arrival needed");
        assert!(present(&c, so(), Some("SOM-BAN"), on));
        assert!(!present(&c, so(), Some("SOM-BAY"), on), "another area");
        assert!(!present(&c, ke(), None, on), "another country");
        for status in [Status::Requested, Status::Refused] {
            let c = clearance(status, banaadir_week(), vec![]);
            assert!(!present(&c, so(), None, on), "{status:?}");
        }
    }

    #[test]
    fn the_leg_dates_are_inclusive() {
        let c = clearance(Status::Approved, banaadir_week(), vec![]);
        assert!(!present(&c, so(), None, date!(2026 - 11 - 19)));
        assert!(present(&c, so(), None, date!(2026 - 11 - 20)));
        assert!(present(&c, so(), None, date!(2026 - 11 - 30)));
        assert!(!present(&c, so(), None, date!(2026 - 12 - 01)));
    }

    #[test]
    fn a_leg_without_an_area_covers_the_whole_country() {
        let c = clearance(
            Status::Approved,
            vec![leg(
                so(),
                None,
                date!(2026 - 11 - 20),
                date!(2026 - 11 - 30),
            )],
            vec![],
        );
        assert!(present(&c, so(), Some("SOM-BAN"), date!(2026 - 11 - 25)));
        assert!(present(&c, so(), Some("SOM-BAY"), date!(2026 - 11 - 25)));
    }

    #[test]
    fn a_departure_ends_presence_from_its_day_and_a_new_arrival_restarts_it() {
        let left = clearance(
            Status::Approved,
            banaadir_week(),
            vec![
                moved(MovementKind::Arrival, so(), datetime!(2026-11-21 09:00 UTC)),
                moved(
                    MovementKind::Departure,
                    so(),
                    datetime!(2026-11-25 07:00 UTC),
                ),
            ],
        );
        assert!(present(&left, so(), None, date!(2026 - 11 - 24)));
        assert!(
            !present(&left, so(), None, date!(2026 - 11 - 25)),
            "left that day"
        );
        assert!(!present(&left, so(), None, date!(2026 - 11 - 28)));
        let mut back = left.clone();
        back.0.movements.push(moved(
            MovementKind::Arrival,
            so(),
            datetime!(2026-11-27 10:00 UTC),
        ));
        assert!(!present(&back, so(), None, date!(2026 - 11 - 26)));
        assert!(
            present(&back, so(), None, date!(2026 - 11 - 27)),
            "back again"
        );
        // Out and back in on the same day: the one recorded last stands.
        let mut same_day = left.clone();
        same_day.0.movements.push(moved(
            MovementKind::Arrival,
            so(),
            datetime!(2026-11-25 18:00 UTC),
        ));
        assert!(present(&same_day, so(), None, date!(2026 - 11 - 25)));
    }

    #[test]
    fn movements_elsewhere_do_not_matter() {
        let c = clearance(
            Status::Approved,
            vec![
                leg(ke(), None, date!(2026 - 11 - 18), date!(2026 - 11 - 20)),
                leg(so(), None, date!(2026 - 11 - 20), date!(2026 - 11 - 30)),
            ],
            vec![moved(
                MovementKind::Departure,
                ke(),
                datetime!(2026-11-20 06:00 UTC),
            )],
        );
        assert!(present(&c, so(), None, date!(2026 - 11 - 20)));
        assert!(!present(&c, ke(), None, date!(2026 - 11 - 20)));
        assert!(present(&c, ke(), None, date!(2026 - 11 - 19)));
    }

    #[test]
    fn a_movement_counts_on_its_local_date() {
        // 01:00 in Mogadishu on the 25th is 22:00 UTC on the 24th: the date as written counts.
        let eat = UtcOffset::from_hms(3, 0, 0).unwrap();
        let instant = datetime!(2026-11-24 22:00 UTC);
        let local = clearance(
            Status::Approved,
            banaadir_week(),
            vec![moved(MovementKind::Departure, so(), instant.to_offset(eat))],
        );
        assert!(present(&local, so(), None, date!(2026 - 11 - 24)));
        assert!(!present(&local, so(), None, date!(2026 - 11 - 25)));
        let utc = clearance(
            Status::Approved,
            banaadir_week(),
            vec![moved(MovementKind::Departure, so(), instant)],
        );
        assert!(!present(&utc, so(), None, date!(2026 - 11 - 24)));
    }

    /// Records a clearance's events in order, to fold them both ways.
    fn record(events: &[DomainEvent]) -> Vec<RecordedEvent> {
        let stream = events::domain::clearance::stream_for(Uuid::from_u128(1));
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = i as u64 + 1;
                RecordedEvent::record(
                    e.to_new_event(Uuid::from_u128(n as u128), Meta::default()),
                    stream.clone(),
                    n,
                    n,
                    OffsetDateTime::UNIX_EPOCH,
                )
            })
            .collect()
    }

    /// The plain model: walk the calendar day by day from the first day that matters up to
    /// `on`, applying that day's movements in the order recorded; check coverage leg by leg.
    fn model(
        status: Status,
        legs: &[Leg],
        moves: &[(Country, OffsetDateTime, bool)],
        country: Country,
        area: Option<&str>,
        on: Date,
    ) -> bool {
        let mut covered = false;
        for leg in legs {
            let area_ok = match (area, &leg.area) {
                (None, _) | (_, None) => true,
                (Some(a), Some(l)) => a == l,
            };
            if leg.country == country && area_ok && leg.from <= on && on <= leg.to {
                covered = true;
            }
        }
        let mut inside = true;
        let mut day = date!(2026 - 10 - 01);
        while day <= on {
            for (c, at, arrived) in moves {
                if *c == country && at.date() == day {
                    inside = *arrived;
                }
            }
            day = day.next_day().unwrap();
        }
        status == Status::Approved && covered && inside
    }

    proptest! {
        /// `present` against the plain model and against the shared rule the relocation
        /// service uses, over random itineraries, decisions, movements (in several offsets)
        /// and questions.
        #[test]
        fn present_matches_a_simple_model_and_the_shared_rule(
            decision in 0u8..3,
            legs in prop::collection::vec(
                (0usize..3, prop::option::of(0usize..2), 0i64..40, 0i64..12), 1..5),
            moves in prop::collection::vec(
                (0usize..3, 0i64..50, 0i64..24, 0usize..3, any::<bool>()), 0..8),
            asked_country in 0usize..3,
            asked_area in prop::option::of(0usize..2),
            day in 0i64..55,
        ) {
            let countries = [so(), ke(), Country::parse("ET").unwrap()];
            let areas = ["A1", "A2"];
            let offsets = [
                UtcOffset::UTC,
                UtcOffset::from_hms(3, 0, 0).unwrap(),
                UtcOffset::from_hms(-5, 0, 0).unwrap(),
            ];
            let start = date!(2026 - 11 - 01);
            let legs: Vec<Leg> = legs
                .into_iter()
                .map(|(c, a, from, len)| Leg {
                    country: countries[c],
                    area: a.map(|a| areas[a].to_owned()),
                    from: start + time::Duration::days(from),
                    to: start + time::Duration::days(from + len),
                })
                .collect();
            let moves: Vec<(Country, OffsetDateTime, bool)> = moves
                .into_iter()
                .map(|(c, d, h, o, arrived)| {
                    let utc = start.midnight().assume_utc()
                        + time::Duration::days(d)
                        + time::Duration::hours(h);
                    (countries[c], utc.to_offset(offsets[o]), arrived)
                })
                .collect();
            let mut events: Vec<DomainEvent> = vec![ClearanceRequested {
                traveller: "P-1".into(),
                itinerary: legs.clone(),
                purpose: None,
            }
            .into()];
            let status = match decision {
                0 => Status::Requested,
                1 => {
                    events.push(ClearanceApproved { by: "d".into() }.into());
                    Status::Approved
                }
                _ => {
                    events.push(ClearanceRefused { by: "d".into(), reason: "r".into() }.into());
                    Status::Refused
                }
            };
            for (country, at, arrived) in &moves {
                events.push(if *arrived {
                    ArrivalRecorded { country: *country, at: *at }.into()
                } else {
                    DepartureRecorded { country: *country, at: *at }.into()
                });
            }
            let state = ClearanceState::fold(&record(&events)).unwrap();
            prop_assert_eq!(state.status, status);
            let mut travel = None;
            for e in &events {
                Travel::apply(&mut travel, e);
            }
            let travel = travel.unwrap();
            let country = countries[asked_country];
            let area = asked_area.map(|a| areas[a]);
            let on = start + time::Duration::days(day);

            let answer = present(&state, country, area, on);
            prop_assert_eq!(answer, model(status, &legs, &moves, country, area, on));
            prop_assert_eq!(answer, travel.present(country, area, on));
        }
    }
}
