//! Input rules shared by the domain events: countries, coordinates, lengths, levels.
//!
//! Every rule returns a [`ValidationError`] naming the field and saying, for a human, what is
//! wrong. A type whose every value is valid ([`Country`], [`SecurityLevel`], [`Severity`]) checks
//! itself when it is built or deserialised, so holding one is proof enough.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

/// Longest identifier (duty station, area, user, person, agency).
pub const MAX_ID_LEN: usize = 64;

/// A refused value: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Path of the field, e.g. `location.lat` or `itinerary[2].to`.
    pub field: String,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl ValidationError {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same refusal, seen from the enclosing value: `lat` inside `location` becomes
    /// `location.lat`.
    #[must_use]
    pub fn at(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Shortens input quoted back in an error message, so a huge value cannot make a huge error.
fn quote(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// Every officially assigned ISO 3166-1 alpha-2 code (249; checked against Debian's iso-codes).
pub const COUNTRY_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// An ISO 3166-1 alpha-2 country code, upper-case (`SO`, `AF`). Serialised as its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country(&'static str);

impl Country {
    /// Parses an assigned ISO 3166-1 alpha-2 code; lower case is refused, not guessed.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if let Ok(i) = COUNTRY_CODES.binary_search(&s) {
            return Ok(Self(COUNTRY_CODES[i]));
        }
        let upper = s.to_ascii_uppercase();
        let hint = if upper != s && COUNTRY_CODES.binary_search(&upper.as_str()).is_ok() {
            format!(" (codes are upper-case: {upper:?})")
        } else {
            String::new()
        };
        Err(ValidationError::new(
            "country",
            format!(
                "{} is not an ISO 3166-1 alpha-2 country code{hint}",
                quote(s)
            ),
        ))
    }

    /// The code, e.g. `SO`.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Country {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A point on the Earth in decimal degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatLon {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
}

impl LatLon {
    /// Checks both coordinates are finite and in range (fields `lat` and `lon`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        in_range("lat", self.lat, -90.0, 90.0, "degrees")?;
        in_range("lon", self.lon, -180.0, 180.0, "degrees")
    }
}

fn in_range(field: &str, v: f64, min: f64, max: f64, unit: &str) -> Result<(), ValidationError> {
    if !v.is_finite() {
        return Err(ValidationError::new(
            field,
            format!("{v} is not a finite number"),
        ));
    }
    if v < min || v > max {
        return Err(ValidationError::new(
            field,
            format!("{v} is out of range ({min} to {max} {unit})"),
        ));
    }
    Ok(())
}

/// Largest accepted position accuracy, in metres.
pub const MAX_ACCURACY_M: f64 = 100_000.0;

/// Checks a position accuracy in metres: finite, 0 to [`MAX_ACCURACY_M`].
pub fn accuracy_m(field: &str, value: f64) -> Result<(), ValidationError> {
    in_range(field, value, 0.0, MAX_ACCURACY_M, "metres")
}

/// Checks that `value` has `min` to `max` characters (Unicode scalar values, not bytes).
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if n < min {
        return Err(ValidationError::new(
            field,
            format!("must be at least {min} characters, got {n}"),
        ));
    }
    if n > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {n}"),
        ));
    }
    Ok(())
}

/// Whether `c` shows nothing: zero-width spaces and joiners, the word joiner, the byte-order
/// mark, the soft hyphen. A text made only of these (and spaces) looks empty on a screen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Whether `c` reorders the text around it: the bidi embeddings and overrides (U+202A to
/// U+202E) and isolates (U+2066 to U+2069). With them a title can show a different text from
/// the one stored (a "Trojan source" title on the wall screen); nobody types them in a report.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The text rules shared by [`line`] and [`non_blank`]: no control character other than
/// those in `allowed`, no bidi control, something visible, at most `max` characters.
fn visible_text(
    field: &str,
    value: &str,
    max: usize,
    allowed: &[char],
) -> Result<(), ValidationError> {
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| (c.is_control() && !allowed.contains(c)) || is_bidi_control(*c))
    {
        let what = if is_bidi_control(c) {
            "a bidirectional-text control"
        } else {
            "a control character"
        };
        return Err(ValidationError::new(
            field,
            format!(
                "character {} is {what} (U+{:04X}); remove it",
                i + 1,
                u32::from(c)
            ),
        ));
    }
    if value.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(ValidationError::new(field, "must not be blank"));
    }
    text(field, value, 1, max)
}

/// Checks a single-line text (a title, a name): something visible, at most `max` characters,
/// no control character at all (not even a newline or a tab) and no bidi control. Input is
/// normalised to NFC before it is checked ([`nfc_json`]).
pub fn line(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    visible_text(field, value, max, &[])
}

/// Checks an optional single-line text with [`line`].
pub fn opt_line(field: &str, value: Option<&str>, max: usize) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| line(field, v, max))
}

/// Checks a free text (a description, a reason, a note): something visible, at most `max`
/// characters; it may hold line breaks and tabs but no other control character and no bidi
/// control.
pub fn non_blank(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    visible_text(field, value, max, &['\n', '\r', '\t'])
}

/// Normalises every string value of a JSON tree to Unicode NFC, so the same
/// words typed on two keyboards are stored, compared and searched as the same text. Commands
/// pass through it before they are read (`runtime::commands::decode`).
pub fn nfc_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    use unicode_normalization::{UnicodeNormalization, is_nfc_quick};
    fn nfc(s: &mut String) {
        // Most input is ASCII or already NFC: leave it untouched, without allocating.
        if is_nfc_quick(s.chars()) != unicode_normalization::IsNormalized::Yes {
            *s = s.nfc().collect();
        }
    }
    match value {
        Value::String(s) => nfc(s),
        Value::Array(items) => items.iter_mut().for_each(nfc_json),
        // Keys are field names: the typed read refuses any it does not know.
        Value::Object(map) => map.values_mut().for_each(nfc_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Checks an identifier (duty station, area, user, person, agency): 1 to [`MAX_ID_LEN`]
/// characters, no whitespace or control characters.
pub fn id(field: &str, value: &str) -> Result<(), ValidationError> {
    text(field, value, 1, MAX_ID_LEN)?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            field,
            format!(
                "{} must not contain spaces or control characters",
                quote(value)
            ),
        ));
    }
    Ok(())
}

/// Checks an optional identifier with [`id`].
pub fn opt_id(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| id(field, v))
}

/// Checks an optional text with [`non_blank`].
pub fn opt_non_blank(field: &str, value: Option<&str>, max: usize) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| non_blank(field, v, max))
}

/// Checks that a list has `min` to `max` entries.
pub fn count(field: &str, len: usize, min: usize, max: usize) -> Result<(), ValidationError> {
    if len < min || len > max {
        return Err(ValidationError::new(
            field,
            format!("must have {min} to {max} entries, got {len}"),
        ));
    }
    Ok(())
}

/// Checks a list of identifiers: `min` to `max` entries, each an [`id`], none twice.
pub fn id_list(field: &str, ids: &[String], min: usize, max: usize) -> Result<(), ValidationError> {
    count(field, ids.len(), min, max)?;
    for (i, v) in ids.iter().enumerate() {
        let at = format!("{field}[{i}]");
        id(&at, v)?;
        if ids[..i].contains(v) {
            return Err(ValidationError::new(
                at,
                format!("{} is listed twice", quote(v)),
            ));
        }
    }
    Ok(())
}

/// Checks that a timestamp can be written as RFC 3339 and is not absurd: a year from 1900
/// to 9999 and an offset of whole minutes.
pub fn timestamp(field: &str, t: OffsetDateTime) -> Result<(), ValidationError> {
    if !(1900..=9999).contains(&t.year()) || t.offset().seconds_past_minute() != 0 {
        return Err(ValidationError::new(
            field,
            format!("{t} is not a timestamp from 1900 to 9999 with a whole-minute offset"),
        ));
    }
    Ok(())
}

/// How far after the receiving service's clock a reported time may be: a phone or laptop
/// clock that runs a few minutes fast is normal, an hour ahead is a wrong date.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Checks that `t` happened between `earliest` and `now` (plus [`CLOCK_SKEW`]). The clock is
/// the caller's: `now` is passed in, so the rule is pure and testable.
pub fn in_window(
    field: &str,
    t: OffsetDateTime,
    earliest: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    if t > now + CLOCK_SKEW {
        return Err(ValidationError::new(
            field,
            format!(
                "{} is in the future (the centre's clock says {}); check the date, time and time zone",
                fmt(t),
                fmt(now)
            ),
        ));
    }
    if t < earliest {
        return Err(ValidationError::new(
            field,
            format!(
                "{} is before {}, the earliest accepted here",
                fmt(t),
                fmt(earliest)
            ),
        ));
    }
    Ok(())
}

/// Checks an optional timestamp with [`timestamp`].
pub fn opt_timestamp(field: &str, t: Option<OffsetDateTime>) -> Result<(), ValidationError> {
    t.map_or(Ok(()), |t| timestamp(field, t))
}

/// Serde for a small integer newtype that checks its range when deserialised.
macro_rules! int_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8(self.get())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = i64::deserialize(d)?;
                Self::new(n).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A security level of an area, 1 (Minimal) to 6 (Extreme). Serialised as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityLevel {
    /// Level 1.
    Minimal = 1,
    /// Level 2.
    Low = 2,
    /// Level 3.
    Moderate = 3,
    /// Level 4.
    Substantial = 4,
    /// Level 5.
    High = 5,
    /// Level 6.
    Extreme = 6,
}

impl SecurityLevel {
    /// All levels, lowest first.
    pub const ALL: [Self; 6] = [
        Self::Minimal,
        Self::Low,
        Self::Moderate,
        Self::Substantial,
        Self::High,
        Self::Extreme,
    ];

    /// The level numbered `n` (1 to 6).
    pub fn new(n: i64) -> Result<Self, ValidationError> {
        usize::try_from(n)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| Self::ALL.get(i).copied())
            .ok_or_else(|| {
                ValidationError::new(
                    "level",
                    format!("{n} is not a security level (1 Minimal to 6 Extreme)"),
                )
            })
    }

    /// Its number, 1 to 6.
    pub fn get(self) -> u8 {
        self as u8
    }

    /// Its name, e.g. `Substantial`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minimal => "Minimal",
            Self::Low => "Low",
            Self::Moderate => "Moderate",
            Self::Substantial => "Substantial",
            Self::High => "High",
            Self::Extreme => "Extreme",
        }
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.get(), self.name())
    }
}

int_serde!(SecurityLevel);

/// The severity of an incident, 1 (lowest) to 5 (highest). Serialised as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Severity(u8);

impl Severity {
    /// The severity `n` (1 to 5).
    pub fn new(n: i64) -> Result<Self, ValidationError> {
        match u8::try_from(n) {
            Ok(v @ 1..=5) => Ok(Self(v)),
            _ => Err(ValidationError::new(
                "severity",
                format!("{n} is not a severity (1 to 5)"),
            )),
        }
    }

    /// Its number, 1 to 5.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

int_serde!(Severity);

#[cfg(test)]
mod tests;

/// OpenAPI schemas of the newtypes above: they (de)serialise by hand, so their schemas are
/// written by hand too, from the same constants the parsers use.
mod schemas {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    use super::{COUNTRY_CODES, Country, SecurityLevel, Severity};

    impl utoipa::PartialSchema for Country {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "An assigned ISO 3166-1 alpha-2 country code, upper-case (`SO`).",
                ))
                .enum_values(Some(COUNTRY_CODES.iter().copied()))
                .into()
        }
    }
    impl utoipa::ToSchema for Country {}

    impl utoipa::PartialSchema for Severity {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "The severity of an incident, 1 (lowest) to 5 (highest).",
                ))
                .minimum(Some(1))
                .maximum(Some(5))
                .into()
        }
    }
    impl utoipa::ToSchema for Severity {}

    impl utoipa::PartialSchema for SecurityLevel {
        fn schema() -> RefOr<Schema> {
            let names: Vec<String> = SecurityLevel::ALL.iter().map(|l| l.to_string()).collect();
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(format!(
                    "A security level, by its number: {}.",
                    names.join(", ")
                )))
                .minimum(Some(1))
                .maximum(Some(6))
                .into()
        }
    }
    impl utoipa::ToSchema for SecurityLevel {}
}
