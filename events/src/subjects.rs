//! Every NATS subject Vigil uses, in one place.
//!
//! Categories and UUIDs never contain `.`, `*`, `>` or spaces (see [`crate::Category`]), so a
//! stream name always maps to exactly one subject.

use crate::envelope::{Category, StreamName};

/// Prefix of the append subjects (request/reply): an append goes to
/// `vigil.store.append.<user>.<category>` (see [`append_subject`]). Nobody may publish on
/// the bare prefix; the store does not listen there.
pub const STORE_APPEND: &str = "vigil.store.append";
/// Every append subject, `vigil.store.append.<user>.<category>`: what the store serves.
pub const STORE_APPEND_ALL: &str = "vigil.store.append.*.*";
/// Read the global log from a position (request/reply).
pub const STORE_READ: &str = "vigil.store.read";
/// Read one stream from a version (request/reply).
pub const STORE_STREAM: &str = "vigil.store.stream";
/// Ask every store replica how it stands (request, answered by each replica, not a queue
/// group: collect the answers for a moment). The answer is a [`crate::store_api::StoreStatus`].
pub const STORE_STATUS: &str = "vigil.store.status";
/// The subject of the replicated store's journal (a JetStream stream; only the leader
/// publishes there, see the store's `replication` module).
pub const STORE_JOURNAL: &str = "vigil.journal";
/// Every subject the store answers on.
pub const STORE_ALL: &str = "vigil.store.>";
/// Queue group the store's request handlers join, so a second store process never answers
/// the same request twice (only one store may write; the group makes a mistake harmless).
pub const STORE_QUEUE: &str = "vigil-store";

/// Where `user` appends to a stream of `category`: `vigil.store.append.<user>.<category>`.
///
/// The subject says who appends and to what, so that NATS permissions can hold each user to
/// its own categories (`vigil.store.append.levels.level` and nothing else for `levels`); the
/// store refuses an append whose stream is not of the subject's category and records the
/// subject's user in the event's `meta.appended_by`. `None` when `user` cannot be one
/// subject token (empty, or holding `.`, `*`, `>` or white space).
pub fn append_subject(user: &str, category: &Category) -> Option<String> {
    is_token(user).then(|| format!("{STORE_APPEND}.{user}.{}", category.as_str()))
}

/// The user and category tokens of an append subject; `None` for any other subject.
pub fn parse_append_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(STORE_APPEND)?.strip_prefix('.')?;
    let (user, category) = rest.split_once('.')?;
    (is_token(user) && is_token(category)).then_some((user, category))
}

/// Whether `s` is one plain NATS subject token (no wildcard, separator or white space).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

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
        let level = Category::parse("level").unwrap();
        assert_eq!(
            append_subject("levels", &level).as_deref(),
            Some("vigil.store.append.levels.level")
        );
        for bad in ["", "a.b", "*", ">", "a b"] {
            assert_eq!(append_subject(bad, &level), None, "{bad:?}");
        }
        assert_eq!(
            parse_append_subject("vigil.store.append.levels.level"),
            Some(("levels", "level"))
        );
        for other in [
            "vigil.store.append",
            "vigil.store.append.levels",
            "vigil.store.append.levels.level.x",
            "vigil.store.appendix.a.b",
            "vigil.store.read",
        ] {
            assert_eq!(parse_append_subject(other), None, "{other}");
        }
        assert_eq!(
            command_subject("incidents", "report"),
            "vigil.cmd.incidents.report"
        );
    }
}
