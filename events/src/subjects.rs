//! Every NATS subject Vigil uses, in one place.
//!
//! Categories never contain `.`, `*`, `>` or spaces (see [`crate::Category`]), so a category
//! is always exactly one subject token.

use crate::envelope::Category;

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

/// The committed-event feed: the store publishes each committed group here, as one message
/// or, for a group larger than the server's `max_payload`, a few, in position order. A
/// message's body is the recorded events as a JSON array; its headers say the first position
/// ([`FIRST_POSITION_HEADER`]) and how many consecutive positions it holds
/// ([`COUNT_HEADER`]). Under `vigil.events.>`, where only the store may publish.
pub const EVENTS: &str = "vigil.events.committed";
/// Header of a feed message: the position of its first event.
pub const FIRST_POSITION_HEADER: &str = "Vigil-First-Position";
/// Header of a feed message: how many events it holds.
pub const COUNT_HEADER: &str = "Vigil-Count";

/// Where agency systems receive broadcasts: `vigil.alerts.<agency>`. `None` when the agency
/// id cannot be one subject token (it holds `.`, `*` or `>`).
pub fn alert_subject(agency: &str) -> Option<String> {
    (!agency.is_empty() && !agency.contains(['.', '*', '>', ' ']))
        .then(|| format!("vigil.alerts.{agency}"))
}

/// Where agency systems acknowledge broadcasts (a request on `vigil.alerts.<agency>.ack`).
pub const ALERT_ACKS: &str = "vigil.alerts.*.ack";

/// A field site's link and outbox (a request on the site's own bus, answered by
/// `vigil site`; nobody answers it at the centre). The gateway at a site reads it for
/// `GET /api/v1/site/state`.
pub const SITE_STATE: &str = "vigil.local.state";

/// Every domain command (`vigil.cmd.<service>.<command>`): a field site answers these on
/// its own bus (the forwardable ones into its outbox, the others refused).
pub const COMMANDS_ALL: &str = "vigil.cmd.*.*";
/// Ask every domain service instance whether it is ready (request, answered by each
/// instance, not a queue group: collect the answers for a moment). The answer is a
/// `runtime::status::ServiceStatus`; the gateway's `/readyz` is built from them.
pub const SERVICE_STATUS: &str = "vigil.status";

/// A domain command: `vigil.cmd.<service>.<command>`.
pub fn command_subject(service: &str, command: &str) -> String {
    format!("vigil.cmd.{service}.{command}")
}

/// The last token of a batch's subject ([`batch_subject`]).
pub const BATCH: &str = "batch";

/// Several commands of one kind, carried out in order:
/// `vigil.cmd.<service>.<command>.batch` (the generic host, `runtime::host`). Its own subject
/// per command, so a NATS user allowed one command alone is allowed its batch and no other.
pub fn batch_subject(service: &str, command: &str) -> String {
    format!("vigil.cmd.{service}.{command}.{BATCH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_and_parsed() {
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
