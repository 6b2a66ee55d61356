//! Reference data: personnel (stream category `person`, one stream per person) and agencies
//! (category `agency`), loaded by `vigil import`. Names are personal data: only duty views
//! and crisis managers see them; the wall screen never does.

use serde::{Deserialize, Serialize};

use super::area::{MAX_NAME, named_stream};
use crate::envelope::StreamName;
use crate::validate::{Country, ValidationError, id, line};

/// Most dependants recorded for one person.
pub const MAX_DEPENDANTS: u16 = 50;

/// A person was registered, or their reference record changed (the latest one stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRegistered {
    /// The person's id (personnel reference), e.g. `P-000123`.
    pub person: String,
    /// Full name.
    pub name: String,
    /// Agency id.
    pub agency: String,
    /// Nationality.
    pub nationality: Country,
    /// The duty station they are assigned to.
    pub duty_station: String,
    /// Dependants at the duty station.
    #[serde(default)]
    pub dependants: u16,
    /// Whether they are a security officer (can be assigned to surges).
    #[serde(default)]
    pub security_officer: bool,
    /// Whether their post is essential (stays under a "non-essential" relocation).
    #[serde(default)]
    pub essential: bool,
}

impl PersonRegistered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("person", &self.person)?;
        line("name", &self.name, MAX_NAME)?;
        id("agency", &self.agency)?;
        id("duty_station", &self.duty_station)?;
        if self.dependants > MAX_DEPENDANTS {
            return Err(ValidationError::new(
                "dependants",
                format!("at most {MAX_DEPENDANTS}, got {}", self.dependants),
            ));
        }
        Ok(())
    }
}

/// The stream of person `person`: `person-<uuid v5>`.
pub fn stream_for(person: &str) -> StreamName {
    named_stream("person", "person", person)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_person_is_checked() {
        let p: PersonRegistered = serde_json::from_value(json!({
            "person": "P-000001", "name": "Amina Hassan", "agency": "unicef",
            "nationality": "KE", "duty_station": "SOM-MGQ", "dependants": 2
        }))
        .unwrap();
        assert!(p.validate().is_ok());
        assert!(!p.security_officer && !p.essential);
        let many = PersonRegistered {
            dependants: 51,
            ..p.clone()
        };
        assert_eq!(many.validate().unwrap_err().field, "dependants");
        let blank = PersonRegistered {
            name: " ".into(),
            ..p
        };
        assert_eq!(blank.validate().unwrap_err().field, "name");
    }
}
