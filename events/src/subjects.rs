//! Every NATS subject Vigil uses, in one place.
//!
//! Categories and UUIDs never contain `.`, `*`, `>` or spaces (see [`crate::Category`]), so a
//! stream name always maps to exactly one subject.

use crate::envelope::StreamName;

/// Append events to a stream (request/reply).
pub const STORE_APPEND: &str = "vigil.store.append";
/// Read the global log from a position (request/reply).
pub const STORE_READ: &str = "vigil.store.read";
/// Read one stream from a version (request/reply).
pub const STORE_STREAM: &str = "vigil.store.stream";
/// Every subject the store answers on.
pub const STORE_ALL: &str = "vigil.store.>";
/// Queue group the store's request handlers join, so a second store process never answers
/// the same request twice (only one store may write; the group makes a mistake harmless).
pub const STORE_QUEUE: &str = "vigil-store";

/// Prefix of the committed-event feed.
pub const EVENTS_PREFIX: &str = "vigil.events";
/// Every committed event.
pub const EVENTS_ALL: &str = "vigil.events.>";
/// Header carrying a published event's global position.
pub const POSITION_HEADER: &str = "Vigil-Position";

/// Where agency systems receive broadcasts: `vigil.alerts.<agency>`. `None` when the agency
/// id cannot be one subject token (it holds `.`, `*` or `>`).
pub fn alert_subject(agency: &str) -> Option<String> {
    (!agency.is_empty() && !agency.contains(['.', '*', '>', ' ']))
        .then(|| format!("vigil.alerts.{agency}"))
}

/// Where agency systems acknowledge broadcasts (a request on `vigil.alerts.<agency>.ack`).
pub const ALERT_ACKS: &str = "vigil.alerts.*.ack";

/// Subject on which the store publishes a committed event of `stream`:
/// `vigil.events.<category>.<uuid>`.
pub fn event_subject(stream: &StreamName) -> String {
    format!(
        "{EVENTS_PREFIX}.{}.{}",
        stream.category().as_str(),
        stream.id().hyphenated()
    )
}

/// All committed events of one category: `vigil.events.<category>.*`.
pub fn category_subject(category: &str) -> String {
    format!("{EVENTS_PREFIX}.{category}.*")
}

/// A domain command: `vigil.cmd.<service>.<command>`.
pub fn command_subject(service: &str, command: &str) -> String {
    format!("vigil.cmd.{service}.{command}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subject_is_category_then_uuid() {
        let s = StreamName::parse("incident-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f").unwrap();
        assert_eq!(
            event_subject(&s),
            "vigil.events.incident.0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f"
        );
        assert_eq!(category_subject("level"), "vigil.events.level.*");
        assert_eq!(
            command_subject("incidents", "report"),
            "vigil.cmd.incidents.report"
        );
    }
}
