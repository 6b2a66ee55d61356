//! Travel security clearance events (stream category `clearance`): a request with its
//! itinerary, the decision, and arrivals and departures on the way.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::MAX_REASON;
use crate::validate::{
    Country, ValidationError, count, id, non_blank, opt_id, opt_non_blank, timestamp,
};

/// Most legs in one itinerary.
pub const MAX_LEGS: usize = 20;

// Dates are written `YYYY-MM-DD`.
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// One leg of a journey: a stay in a country (or an area of it) between two dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
