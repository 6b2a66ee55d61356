//! Security level events (stream category `level`, one stream per area).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MAX_REASON;
use crate::validate::{Country, SecurityLevel, ValidationError, id, non_blank};

/// The security level of an area was set (raised, lowered or confirmed).
///
/// Schema history: v1 called the reason `note`; v2 renamed it `reason`. Version 1 events stay
/// readable through [`upcast_v1_note_to_reason`], registered in [`crate::domain::UPCASTERS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSecurityLevelSet {
    /// The area (a country, a region or a city, by its id).
    pub area: String,
    /// The country the area is in.
    pub country: Country,
    /// The new level, 1 to 6.
    pub level: SecurityLevel,
    /// Why, 1 to 2000 characters (called `note` in v1).
    pub reason: String,
    /// The level before, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_level: Option<SecurityLevel>,
}

impl AreaSecurityLevelSet {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("area", &self.area)?;
        non_blank("reason", &self.reason, MAX_REASON)
    }
}

/// The stream of area `area`'s security level: `level-<uuid v5>`, one per area.
pub fn stream_for(area: &str) -> crate::StreamName {
    super::area::named_stream("level", "level", area)
}

/// The worked example of an upcaster: `AreaSecurityLevelSet` v1 → v2 renames `note` to
/// `reason`. Written once, never changed: v1 events in the log are read through it forever.
pub fn upcast_v1_note_to_reason(mut data: Value) -> Result<Value, String> {
    let obj = data
        .as_object_mut()
        .ok_or("AreaSecurityLevelSet v1 data is not an object")?;
    let note = obj
        .remove("note")
        .ok_or("AreaSecurityLevelSet v1 data has no \"note\"")?;
    obj.insert("reason".to_owned(), note);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_level_change_is_checked_and_round_trips() {
        let e = AreaSecurityLevelSet {
            area: "SOM-MGQ".into(),
            country: Country::parse("SO").unwrap(),
            level: SecurityLevel::High,
            reason: "Sustained attacks on the airport road".into(),
            previous_level: Some(SecurityLevel::Substantial),
        };
        assert!(e.validate().is_ok());
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["level"], 5);
        assert_eq!(
            serde_json::from_value::<AreaSecurityLevelSet>(v).unwrap(),
            e
        );
        let bad = json!({"area": "a", "country": "SO", "level": 7, "reason": "r"});
        let msg = serde_json::from_value::<AreaSecurityLevelSet>(bad)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("level: 7 is not a security level"), "{msg}");
        let empty = AreaSecurityLevelSet {
            reason: String::new(),
            ..e.clone()
        };
        assert_eq!(
            empty.validate().unwrap_err().to_string(),
            "reason: must not be blank"
        );
        let long = AreaSecurityLevelSet {
            reason: "r".repeat(2001),
            ..e
        };
        assert_eq!(long.validate().unwrap_err().field, "reason");
    }

    #[test]
    fn the_v1_upcaster_renames_note() {
        let v1 = json!({"area": "a", "country": "SO", "level": 3, "note": "why"});
        assert_eq!(
            upcast_v1_note_to_reason(v1).unwrap(),
            json!({"area": "a", "country": "SO", "level": 3, "reason": "why"})
        );
        assert!(upcast_v1_note_to_reason(json!([1])).is_err());
        assert!(upcast_v1_note_to_reason(json!({"reason": "x"})).is_err());
    }
}
