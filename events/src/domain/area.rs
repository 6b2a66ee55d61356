//! Reference data: areas (stream category `area`, one stream per area), loaded by
//! `vigil import`. An area belongs to one country; its security level lives in the `level`
//! stream of the same area ([`crate::domain::level::stream_for`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{Category, StreamName};
use crate::validate::{Country, ValidationError, id, line};

/// Longest display name of an area or duty station.
pub const MAX_NAME: usize = 200;

/// An area was registered, or its reference record changed (the latest one stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaRegistered {
    /// The area's id, e.g. `SOM-BAN`.
    pub area: String,
    /// The country it is in.
    pub country: Country,
    /// Its name, e.g. `Banaadir`.
    pub name: String,
}

impl AreaRegistered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("area", &self.area)?;
        line("name", &self.name, MAX_NAME)
    }
}

/// Stream id of a piece of reference data or of a per-area stream: a UUID v5 of
/// `vigil-<kind>-<id>`, so every writer and every restart agrees on it without coordination.
pub(crate) fn named_stream(category: &str, kind: &str, key: &str) -> StreamName {
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("vigil-{kind}-{key}").as_bytes(),
    );
    // Callers pass fixed lower-case category names, which are always valid.
    StreamName::new(Category(category.to_owned()), id)
}

/// The stream of area `area`: `area-<uuid v5>`.
pub fn stream_for(area: &str) -> StreamName {
    named_stream("area", "area", area)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_area_is_checked_and_has_one_stream() {
        let a: AreaRegistered =
            serde_json::from_value(json!({"area": "SOM-BAN", "country": "SO", "name": "Banaadir"}))
                .unwrap();
        assert!(a.validate().is_ok());
        assert_eq!(stream_for("SOM-BAN"), stream_for("SOM-BAN"));
        assert_ne!(stream_for("SOM-BAN"), stream_for("SOM-BAY"));
        assert!(stream_for("SOM-BAN").as_str().starts_with("area-"));
        let bad = AreaRegistered {
            area: "has space".into(),
            ..a
        };
        assert_eq!(bad.validate().unwrap_err().field, "area");
    }
}
