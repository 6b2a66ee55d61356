//! Reference data: agencies (stream category `agency`, one stream per agency), loaded by
//! `vigil import`. Broadcasts go to agencies; personnel belong to one.

use serde::{Deserialize, Serialize};

use super::area::{MAX_NAME, named_stream};
use crate::envelope::StreamName;
use crate::validate::{ValidationError, id, non_blank};

/// An agency was registered, or its reference record changed (the latest one stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyRegistered {
    /// The agency's id, e.g. `unicef`.
    pub agency: String,
    /// Its name.
    pub name: String,
}

impl AgencyRegistered {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        id("agency", &self.agency)?;
        non_blank("name", &self.name, MAX_NAME)
    }
}

/// The stream of agency `agency`: `agency-<uuid v5>`.
pub fn stream_for(agency: &str) -> StreamName {
    named_stream("agency", "agency", agency)
}
