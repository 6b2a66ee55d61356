//! Broadcasts as CAP 1.2 (OASIS Common Alerting Protocol) XML, and an Atom 1.0 feed of them.
//!
//! This module owns the mapping from a [`BroadcastIssued`] to a CAP alert and nothing else: it
//! is pure (no I/O, no clock), so the same broadcast always renders to the same bytes. It
//! promises that every document it returns is well-formed XML 1.0 that [`parse`] reads back,
//! with the broadcast's text intact up to three documented rules, applied to every free text
//! (title, body, feed title):
//!
//! * characters XML 1.0 cannot carry (most C0 control characters, U+FFFE, U+FFFF) are
//!   **stripped**, and line ends are normalised to `\n` (as any XML parser would);
//! * leading and trailing XML white space (space, tab, line feed) is trimmed (CAP readers,
//!   oasiscap included, trim it anyway);
//! * the CAP `headline` is at most [`HEADLINE_MAX_CHARS`] characters, cut on a character
//!   boundary; an exercise's headline starts with [`EXERCISE_PREFIX`].
//!
//! Mapping, per CAP 1.2 §3: `identifier` is [`identifier`]`(id)`; `status` is `Exercise` for an
//! exercise, else `Actual`; `msgType` is `Update`/`Cancel` when the broadcast updates/cancels
//! another, else `Alert`, with `references` naming the original when the caller gives it;
//! `scope` is `Public` for every agency, `Private` (with the recipient agencies as `addresses`)
//! for a country or a list of agencies, `Restricted` (with [`RESTRICTION`]) for the centre's
//! duty officers or crisis managers. One `info` block carries the text, urgency, severity,
//! expiry (the acknowledgement deadline) and one `area`.

use std::fmt::Write as _;

use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity};
use oasiscap::delimited_items::Items;
use oasiscap::id::Id;
use oasiscap::language::Language;
use oasiscap::references::{Reference, References};
use oasiscap::v1dot2::{
    Area, Category, Certainty, Info, MessageType, ResponseType, Scope, Severity, Status, Urgency,
};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// Longest CAP headline, in characters (CAP 1.2 suggests 160 for SMS-like displays).
pub const HEADLINE_MAX_CHARS: usize = 160;
/// What starts an exercise's headline, so it is visibly an exercise everywhere it is shown.
pub const EXERCISE_PREFIX: &str = "EXERCISE: ";
/// The CAP `event` of a real broadcast.
pub const EVENT: &str = "Security advisory";
/// The CAP `event` of an exercise.
pub const EXERCISE_EVENT: &str = "EXERCISE – Security advisory";
/// The CAP `restriction` of a broadcast to the centre's duty officers or crisis managers.
pub const RESTRICTION: &str = "UN security management system: internal";
/// The `areaDesc` of a broadcast not tied to one country.
pub const ALL_DUTY_STATIONS: &str = "All duty stations";
/// The CAP `language` of every alert.
pub const LANGUAGE: &str = "en-US";
/// The media type of one CAP alert (each feed entry's `content` type).
pub const CAP_MEDIA_TYPE: &str = "application/cap+xml";
/// The media type of the feed.
pub const ATOM_MEDIA_TYPE: &str = "application/atom+xml";

const ATOM_NS: &str = "http://www.w3.org/2005/Atom";

/// One broadcast as a CAP alert.
#[derive(Debug, Clone, Copy)]
pub struct CapAlert<'a> {
    /// The broadcast's id.
    pub id: Uuid,
    /// The CAP `sender`, e.g. `vigil@centre.example`: no white space, `,`, `<` or `&`.
    pub sender: &'a str,
    /// When it was issued (the recorded time of its `BroadcastIssued`); CAP keeps whole
    /// seconds, in UTC here.
    pub sent: OffsetDateTime,
    /// The broadcast.
    pub issued: &'a BroadcastIssued,
    /// The broadcast it updates or cancels: (id, sent). CAP `references` needs the original's
    /// sender (taken to be [`CapAlert::sender`]), identifier and sent time. When given, the id
    /// must be the one in `issued.updates` or `issued.cancels`.
    pub references: Option<(Uuid, OffsetDateTime)>,
}

/// Why a broadcast could not be rendered, or a document not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// A value CAP cannot carry (a sender with white space, a time outside years 0–9999, a
    /// private alert without recipients, references naming another broadcast…).
    #[error("CAP {field}: {message}")]
    Invalid {
        /// Which CAP field.
        field: &'static str,
        /// What is wrong, for a human.
        message: String,
    },
    /// The XML writer failed on an alert it was given.
    #[error("CAP: writing the alert as XML failed")]
    Write,
    /// The document is not a CAP alert this module can read.
    #[error("not a CAP alert: {0}")]
    Parse(String),
}

impl CapError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// The CAP `identifier` of broadcast `id`: `vigil-<uuid>`.
pub fn identifier(id: Uuid) -> String {
    format!("vigil-{id}")
}

/// The broadcast as one CAP 1.2 XML document (with its XML declaration and the `<alert>`
/// root element in the CAP 1.2 namespace).
pub fn alert_xml(a: &CapAlert<'_>) -> Result<String, CapError> {
    let alert = oasiscap::Alert::V1dot2(to_cap(a)?);
    let mut xml = String::new();
    // `to_string` would panic if the writer failed; `write!` reports it.
    write!(xml, "{alert}").map_err(|_| CapError::Write)?;
    Ok(xml)
}

/// An Atom 1.0 feed (served as [`ATOM_MEDIA_TYPE`]) with one entry per alert, newest `sent`
/// first (ties keep the given order). Each entry's `content` (type [`CAP_MEDIA_TYPE`]) is the
/// CAP `<alert>` element inline, exactly as [`alert_xml`] renders it minus the XML
/// declaration; its `id` is `urn:uuid:<broadcast id>`, its `title` the CAP headline, its
/// `updated` the `sent` time and its `author` the sender. `feed_id` is the feed's IRI, e.g.
/// `urn:vigil:cap:wfp`; `feed_id` and `title` are cleaned like every other text and escaped.
pub fn feed_xml(
    feed_id: &str,
    title: &str,
    updated: OffsetDateTime,
    alerts: &[CapAlert<'_>],
) -> Result<String, CapError> {
    let mut ordered: Vec<&CapAlert<'_>> = alerts.iter().collect();
    ordered.sort_by_key(|a| std::cmp::Reverse(a.sent));

    let mut out = String::with_capacity(1024 + 3072 * ordered.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<feed xmlns=\"{ATOM_NS}\">\n"));
    out.push_str(&format!("  <id>{}</id>\n", escape(&clean(feed_id))));
    out.push_str(&format!("  <title>{}</title>\n", escape(&clean(title))));
    out.push_str(&format!(
        "  <updated>{}</updated>\n",
        timestamp("updated", updated)?
    ));
    for a in ordered {
        let xml = alert_xml(a)?;
        let element = strip_declaration(&xml);
        out.push_str("  <entry>\n");
        out.push_str(&format!("    <id>urn:uuid:{}</id>\n", a.id));
        out.push_str(&format!(
            "    <title>{}</title>\n",
            escape(&headline(a.issued))
        ));
        out.push_str(&format!(
            "    <updated>{}</updated>\n",
            timestamp("sent", a.sent)?
        ));
        out.push_str(&format!(
            "    <author><name>{}</name></author>\n",
            escape(a.sender)
        ));
        out.push_str(&format!("    <content type=\"{CAP_MEDIA_TYPE}\">\n"));
        out.push_str(element.trim());
        out.push_str("\n    </content>\n");
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    Ok(out)
}

/// Parses one CAP XML document (any CAP version oasiscap reads; ours are 1.2).
pub fn parse(xml: &str) -> Result<oasiscap::Alert, CapError> {
    xml.parse::<oasiscap::Alert>()
        .map_err(|e| CapError::Parse(e.to_string()))
}

/// Every `<alert …>…</alert>` element (with or without a namespace prefix) in a feed made by
/// [`feed_xml`], in feed order, each a document [`parse`] reads. Plain string scanning: it
/// relies on [`feed_xml`] escaping every `<` in text, so it is not a general XML reader.
pub fn alerts_in_feed(feed: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = feed;
    while let Some((start, name_len)) = find_alert_start(rest) {
        let name = &rest[start + 1..start + 1 + name_len];
        let close = format!("</{name}>");
        let Some(end) = rest[start..].find(&close) else {
            break;
        };
        let end = start + end + close.len();
        found.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    found
}

/// Where the next `<alert` or `<prefix:alert` start tag begins, and its name's length.
fn find_alert_start(s: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = s[from..].find('<') {
        let at = from + i;
        let tail = &s[at + 1..];
        let name_len = tail
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .unwrap_or(tail.len());
        let name = &tail[..name_len];
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == "alert" && tail[name_len..].starts_with(|c: char| c != '/') {
            return Some((at, name_len));
        }
        from = at + 1;
    }
    None
}

/// The CAP headline of a broadcast: the cleaned title, or [`EVENT`] when nothing printable is
/// left of it, with [`EXERCISE_PREFIX`] for an exercise (so an exercise is marked even when its
/// title was all control characters), cut to [`HEADLINE_MAX_CHARS`] characters.
pub fn headline(issued: &BroadcastIssued) -> String {
    let mut title = clean(&issued.title);
    if title.is_empty() {
        title = EVENT.to_owned();
    }
    let full = if issued.exercise {
        format!("{EXERCISE_PREFIX}{title}")
    } else {
        title
    };
    let cut: String = full.chars().take(HEADLINE_MAX_CHARS).collect();
    trim_xml_space(&cut).to_owned()
}

/// `text` as XML 1.0 can carry it: `\r\n` and `\r` become `\n`, characters outside the XML
/// 1.0 `Char` production are dropped, and surrounding XML white space is trimmed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
    trim_xml_space(&out).to_owned()
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn trim_xml_space(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// Escapes text for an XML element or a double-quoted attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim_start();
    if xml.starts_with("<?xml") {
        xml.find("?>").map_or(xml, |end| &xml[end + 2..])
    } else {
        xml
    }
}

fn event(issued: &BroadcastIssued) -> &'static str {
    if issued.exercise {
        EXERCISE_EVENT
    } else {
        EVENT
    }
}

/// `t` in UTC, whole seconds, RFC 3339 (`2024-03-01T17:00:00Z`).
fn timestamp(field: &'static str, t: OffsetDateTime) -> Result<String, CapError> {
    let out_of_range = || CapError::invalid(field, "time out of range");
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(out_of_range)?
        .replace_nanosecond(0)
        .map_err(|_| out_of_range())?;
    utc.format(&Rfc3339)
        .map_err(|e| CapError::invalid(field, e.to_string()))
}

fn cap_time(field: &'static str, t: OffsetDateTime) -> Result<oasiscap::DateTime, CapError> {
    timestamp(field, t)?
        .parse::<oasiscap::DateTime>()
        .map_err(|e| CapError::invalid(field, e.to_string()))
}

fn cap_id(field: &'static str, value: &str) -> Result<Id, CapError> {
    if !value.chars().all(is_xml_char) || value.chars().any(char::is_control) {
        return Err(CapError::invalid(field, "contains control characters"));
    }
    Id::new(value).map_err(|e| CapError::invalid(field, e.to_string()))
}

fn urgency(s: BroadcastSeverity) -> Urgency {
    match s {
        BroadcastSeverity::Critical | BroadcastSeverity::High => Urgency::Immediate,
        BroadcastSeverity::Medium => Urgency::Expected,
        BroadcastSeverity::Low | BroadcastSeverity::Info => Urgency::Future,
    }
}

fn severity(s: BroadcastSeverity) -> Severity {
    match s {
        BroadcastSeverity::Critical => Severity::Extreme,
        BroadcastSeverity::High => Severity::Severe,
        BroadcastSeverity::Medium => Severity::Moderate,
        BroadcastSeverity::Low | BroadcastSeverity::Info => Severity::Minor,
    }
}

fn to_cap(a: &CapAlert<'_>) -> Result<oasiscap::v1dot2::Alert, CapError> {
    let b = a.issued;
    let sender = cap_id("sender", a.sender)?;
    let message_type = match (b.updates, b.cancels) {
        (Some(_), Some(_)) => {
            return Err(CapError::invalid(
                "msgType",
                "a broadcast either updates or cancels another, not both",
            ));
        }
        (Some(_), None) => MessageType::Update,
        (None, Some(_)) => MessageType::Cancel,
        (None, None) => MessageType::Alert,
    };
    let references = match a.references {
        None => None,
        Some((original, sent)) => {
            if let Some(named) = b.updates.or(b.cancels)
                && named != original
            {
                return Err(CapError::invalid(
                    "references",
                    format!("names {original}, but the broadcast refers to {named}"),
                ));
            }
            Some(References::new(vec![Reference {
                sender: sender.clone(),
                identifier: cap_id("references", &identifier(original))?,
                sent: cap_time("references", sent)?,
            }]))
        }
    };

    let (scope, restriction, addresses) = match &b.audience {
        Audience::AllAgencies => (Scope::Public, None, None),
        Audience::DutyOfficers | Audience::CrisisManagers => {
            (Scope::Restricted, Some(RESTRICTION.to_owned()), None)
        }
        Audience::Country(_) | Audience::Agencies(_) => {
            let recipients = match (&b.audience, b.recipients.is_empty()) {
                (Audience::Agencies(named), true) => named,
                _ => &b.recipients,
            };
            if recipients.is_empty() {
                return Err(CapError::invalid(
                    "addresses",
                    "a private alert needs at least one recipient agency",
                ));
            }
            for r in recipients {
                cap_id("addresses", r)?;
            }
            let items = Items::try_from(recipients.clone())
                .map_err(|e| CapError::invalid("addresses", e.to_string()))?;
            (Scope::Private, None, Some(items))
        }
    };
    let area = match &b.audience {
        Audience::Country(c) => c.as_str().to_owned(),
        _ => ALL_DUTY_STATIONS.to_owned(),
    };

    let expires = b.ack_deadline.map(|t| cap_time("expires", t)).transpose()?;
    let instruction = if b.requires_ack {
        Some(match b.ack_deadline {
            Some(t) => format!(
                "Acknowledge receipt in Vigil by {}.",
                timestamp("expires", t)?
            ),
            None => "Acknowledge receipt in Vigil.".to_owned(),
        })
    } else {
        None
    };
    let body = clean(&b.body);
    let info = Info {
        language: LANGUAGE
            .parse::<Language>()
            .map_err(|e| CapError::invalid("language", e.to_string()))?,
        categories: vec![Category::Security],
        event: event(b).to_owned(),
        response_type: match message_type {
            MessageType::Cancel => vec![],
            _ => vec![ResponseType::Monitor],
        },
        urgency: urgency(b.severity),
        severity: severity(b.severity),
        certainty: Certainty::Observed,
        audience: None,
        event_codes: Default::default(),
        effective: None,
        onset: None,
        expires,
        sender_name: None,
        headline: Some(headline(b)),
        description: (!body.is_empty()).then_some(body),
        instruction,
        web: None,
        contact: None,
        parameters: Default::default(),
        resources: vec![],
        areas: vec![Area {
            description: area,
            polygons: vec![],
            circles: vec![],
            geocode: Default::default(),
            altitude: None,
            ceiling: None,
        }],
    };

    Ok(oasiscap::v1dot2::Alert {
        identifier: cap_id("identifier", &identifier(a.id))?,
        sender,
        sent: cap_time("sent", a.sent)?,
        status: if b.exercise {
            Status::Exercise
        } else {
            Status::Actual
        },
        message_type,
        source: None,
        scope,
        restriction,
        addresses,
        codes: vec![],
        note: b.exercise.then(|| "Exercise: not a real alert.".to_owned()),
        references,
        incidents: None,
        info: vec![info],
    })
}

#[cfg(test)]
mod tests;
