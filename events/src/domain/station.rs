//! Reference data: duty stations (stream category `station`, one stream per station), loaded
//! by `vigil import`.

use serde::{Deserialize, Serialize};

use super::area::{MAX_NAME, named_stream};
use crate::envelope::StreamName;
use crate::validate::{Country, LatLon, ValidationError, id, line};

/// A duty station was registered, or its reference record changed (the latest one stands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyStationRegistered {
    /// The station's id, e.g. `SOM-MGQ`.
    pub station: String,
    /// The country it is in.
    pub country: Country,
    /// The area it is in.
    pub area: String,
    /// Its name, e.g. `Mogadishu`.
    pub name: String,
    /// Where it is.
    pub lat: f64,
    /// Where it is.
    pub lon: f64,
}

impl DutyStationRegistered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("station", &self.station)?;
        id("area", &self.area)?;
        line("name", &self.name, MAX_NAME)?;
        LatLon {
            lat: self.lat,
            lon: self.lon,
        }
        .validate()
    }
}

/// The stream of duty station `station`: `station-<uuid v5>`.
pub fn stream_for(station: &str) -> StreamName {
    named_stream("station", "station", station)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_station_is_checked() {
        let s: DutyStationRegistered = serde_json::from_value(json!({
            "station": "SOM-MGQ", "country": "SO", "area": "SOM-BAN", "name": "Mogadishu",
            "lat": 2.0469, "lon": 45.3182
        }))
        .unwrap();
        assert!(s.validate().is_ok());
        let far = DutyStationRegistered { lat: 95.0, ..s };
        assert_eq!(far.validate().unwrap_err().field, "lat");
        assert_ne!(
            stream_for("SOM-MGQ"),
            super::super::area::stream_for("SOM-MGQ")
        );
    }
}
