//! Reference data: agencies (stream category `agency`, one stream per agency), loaded by
//! `vigil import`. Broadcasts go to agencies; personnel belong to one.

use serde::{Deserialize, Serialize};

use super::area::{MAX_NAME, named_stream};
use crate::envelope::StreamName;
use crate::validate::{Country, ValidationError, count, id, line};

/// Most countries one agency lists (there are 249 ISO codes).
pub const MAX_COUNTRIES: usize = 250;

/// An agency was registered, or its reference record changed (the latest one stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyRegistered {
    /// The agency's id, e.g. `unicef`.
    pub agency: String,
    /// Its name.
    pub name: String,
    /// The countries it works in: a broadcast to a country goes to these agencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<Country>,
}

impl AgencyRegistered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        line("name", &self.name, MAX_NAME)?;
        count("countries", self.countries.len(), 0, MAX_COUNTRIES)?;
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self.countries.iter().find(|c| !seen.insert(**c)) {
            return Err(ValidationError::new(
                "countries",
                format!("{twice} is listed twice"),
            ));
        }
        Ok(())
    }
}

/// The stream of agency `agency`: `agency-<uuid v5>`.
pub fn stream_for(agency: &str) -> StreamName {
    named_stream("agency", "agency", agency)
}
