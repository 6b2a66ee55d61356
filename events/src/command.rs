//! Domain commands over NATS (`vigil.cmd.<service>.<command>`): who asks, what they ask, and
//! the typed answer.
//!
//! # The contract
//! - A request is a [`Command`]: the command's own id (it becomes the id of the event it
//!   produces, so a retry is stored once), the authenticated [`Actor`], where it came from,
//!   a correlation id, and the command's body.
//! - The answer is [`Reply`]: `{"ok": …}` or `{"error": {"code", "message"}}` with a
//!   [`RefusalCode`] the gateway maps to an HTTP status. A refusal changes nothing.
//! - Only the gateway may publish commands (NATS permissions, see `runtime::nats_auth`): a
//!   service trusts the actor it is given, and still checks the actor's role and scope itself
//!   (the check lives in each aggregate's pure `decide`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate::Country;

/// Largest command a service reads (the biggest body is an incident report with a 10 000
/// character description, well under this).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// The roles (who may do what: docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reports incidents for one country.
    FieldOfficer,
    /// Sees every board, issues orders.
    DutyOfficer,
    /// The only role that sees hostage-case details.
    CrisisManager,
    /// Receives and acknowledges broadcasts for one agency.
    AgencyFocalPoint,
    /// Read-only, redacted: a screen in a room with visitors.
    WallScreen,
    /// Manages users and tokens.
    Admin,
}

impl Role {
    /// Every role, for tests and help texts.
    pub const ALL: [Role; 6] = [
        Role::FieldOfficer,
        Role::DutyOfficer,
        Role::CrisisManager,
        Role::AgencyFocalPoint,
        Role::WallScreen,
        Role::Admin,
    ];

    /// The role's name as written in tokens, files and event `meta`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::FieldOfficer => "field_officer",
            Role::DutyOfficer => "duty_officer",
            Role::CrisisManager => "crisis_manager",
            Role::AgencyFocalPoint => "agency_focal_point",
            Role::WallScreen => "wall_screen",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The authenticated user behind a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Username (or an API token's label).
    pub user: String,
    /// Role.
    pub role: Role,
    /// The country a field officer is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Country>,
    /// The agency an agency focal point speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
}

impl Actor {
    /// Whether this actor may see or touch something in `country`: everyone but a field
    /// officer of another country.
    pub fn covers(&self, country: Country) -> bool {
        self.role != Role::FieldOfficer || self.scope == Some(country)
    }
}

/// Who may do what: the one table that both the gateway's routes (checked before a command
/// is sent) and the services' pure `decide` functions (checked again, with the actor's scope)
/// read. A role not listed gets 403.
pub mod policy {
    use super::Role::{self, *};

    /// Report an incident (field officers: in their own country).
    pub const INCIDENT_REPORT: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager];
    /// List incidents and read one (field officers: their own country only).
    pub const INCIDENT_READ: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager, Admin];
    /// Add details to an open incident (field officers: in their own country).
    pub const INCIDENT_UPDATE: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager];
    /// Confirm a report.
    pub const INCIDENT_VERIFY: &[Role] = &[DutyOfficer];
    /// Link an incident to a hostage case, surge or relocation order.
    pub const INCIDENT_ESCALATE: &[Role] = &[DutyOfficer, CrisisManager];
    /// Close an incident.
    pub const INCIDENT_CLOSE: &[Role] = &[DutyOfficer, CrisisManager];
    /// Set an area's security level.
    pub const LEVEL_SET: &[Role] = &[DutyOfficer];
    /// Read an area's level history (field officers: areas of their own country).
    pub const LEVEL_READ: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager, Admin];

    /// Open a hostage case and act on it (proof of life, contact, release, death, closure).
    pub const HOSTAGE_MANAGE: &[Role] = &[CrisisManager];
    /// Read a hostage case's details (names, captors, location); every read is audited.
    pub const HOSTAGE_DETAILS: &[Role] = &[CrisisManager];
    /// List hostage cases without details (counts and days held only).
    pub const HOSTAGE_SUMMARY: &[Role] = &[DutyOfficer, CrisisManager, Admin];

    /// Request a surge (field officers: for a station in their own country).
    pub const SURGE_REQUEST: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager];
    /// Approve or reject a surge request.
    pub const SURGE_DECIDE: &[Role] = &[CrisisManager];
    /// Assign officers, deploy, complete.
    pub const SURGE_RUN: &[Role] = &[DutyOfficer, CrisisManager];
    /// Read surges (field officers: their own country).
    pub const SURGE_READ: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager, Admin];

    /// Order a relocation or evacuation, complete or rescind it.
    pub const ORDER_ISSUE: &[Role] = &[DutyOfficer, CrisisManager];
    /// Mark people on a roll call (field officers: orders in their own country).
    pub const ORDER_MARK: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager];
    /// Read orders and their roll calls (field officers: their own country).
    pub const ORDER_READ: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager, Admin];

    /// Request a travel clearance.
    pub const CLEARANCE_REQUEST: &[Role] = &[FieldOfficer, DutyOfficer, AgencyFocalPoint];
    /// Approve or refuse a clearance (field officers: every leg in their own country).
    pub const CLEARANCE_DECIDE: &[Role] = &[FieldOfficer, DutyOfficer];
    /// Record an arrival or a departure (field officers: in their own country).
    pub const CLEARANCE_MOVEMENT: &[Role] = &[FieldOfficer, DutyOfficer, AgencyFocalPoint];
    /// Read clearances (field officers: those with a leg in their own country).
    pub const CLEARANCE_READ: &[Role] = &[FieldOfficer, DutyOfficer, CrisisManager, Admin];

    /// Issue a broadcast, update or cancel one.
    pub const BROADCAST_ISSUE: &[Role] = &[DutyOfficer];
    /// Approve another duty officer's broadcast (the two-person rule).
    pub const BROADCAST_APPROVE: &[Role] = &[DutyOfficer];
    /// Acknowledge a broadcast for one's agency.
    pub const BROADCAST_ACK: &[Role] = &[AgencyFocalPoint];
    /// Read broadcasts (focal points: those sent to their agency; crisis-manager-only
    /// broadcasts: crisis managers and admins).
    pub const BROADCAST_READ: &[Role] = &[DutyOfficer, CrisisManager, AgencyFocalPoint, Admin];
}

impl Actor {
    /// `Ok` if the actor's role is one of `roles`, else a `forbidden` refusal naming `what`.
    pub fn may(&self, roles: &[Role], what: &str) -> Result<(), Refusal> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Refusal::forbidden(format!(
                "a {} may not {what}",
                self.role.as_str()
            )))
        }
    }
}

/// The start of a command's `source` when a field site forwarded it: `site:<name>`, set by
/// the centre's relay (a site cannot choose it).
pub const SITE_SOURCE: &str = "site:";

/// A command as the gateway sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command<T> {
    /// The command's id: the id of the event it produces (the idempotency key).
    pub id: Uuid,
    /// Who asks.
    pub actor: Actor,
    /// Where it came from (`http`, `nats`, `cli`, or [`SITE_SOURCE`] and the site's name).
    pub source: String,
    /// Ties together everything done for one user request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// What is asked.
    pub body: T,
}

impl<T> Command<T> {
    /// The field site that forwarded it, if one did.
    pub fn site(&self) -> Option<&str> {
        self.source.strip_prefix(SITE_SOURCE)
    }

    /// The `meta` of the events this command produces: the log is the audit trail.
    pub fn meta(&self) -> crate::Meta {
        crate::Meta {
            actor: Some(self.actor.user.clone()),
            role: Some(self.actor.role.as_str().to_owned()),
            source: Some(self.source.clone()),
            correlation_id: self.correlation_id,
            causation_id: None,
            appended_by: None,
        }
    }
}

/// Why a command was refused. Each maps to one HTTP status in the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// A field is missing, malformed or out of range (422).
    Invalid,
    /// No such thing, or not within the actor's scope (404: existence is not revealed).
    NotFound,
    /// The actor's role or scope does not allow it (403).
    Forbidden,
    /// The two-person rule: another person than the one who asked must do it (403), e.g. the
    /// duty officer who issued a broadcast approving it. Typed so clients can say "ask a
    /// colleague" instead of "you may not".
    SecondPersonRequired,
    /// The thing's state does not allow it (closed, already verified…) (409).
    Conflict,
    /// The command's id was already used for a different command (409).
    IdReused,
    /// The store or the service cannot take it now; retry with the same id (503).
    Unavailable,
}

impl RefusalCode {
    /// The HTTP status the gateway answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Invalid => 422,
            Self::NotFound => 404,
            Self::Forbidden | Self::SecondPersonRequired => 403,
            Self::Conflict | Self::IdReused => 409,
            Self::Unavailable => 503,
        }
    }

    /// The code as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::SecondPersonRequired => "second_person_required",
            Self::Conflict => "conflict",
            Self::IdReused => "id_reused",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A typed refusal: nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code:?}: {message}")]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: RefusalCode,
    /// What happened and what to do next.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A field failed its check.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Invalid, message)
    }

    /// Not found (or out of scope).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::NotFound, message)
    }

    /// Not allowed for this role or scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Forbidden, message)
    }

    /// Must be done by someone else than the one who asked (the two-person rule).
    pub fn second_person_required(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::SecondPersonRequired, message)
    }

    /// Not allowed in this state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Conflict, message)
    }

    /// Try again later with the same id.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Unavailable, message)
    }
}

impl From<crate::validate::ValidationError> for Refusal {
    fn from(e: crate::validate::ValidationError) -> Self {
        Self::invalid(e.to_string())
    }
}

/// The answer to a command: `{"ok": T}` or `{"error": Refusal}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply<T> {
    /// Done (or, for a retry, already done: see the outcome's `duplicate`).
    Ok(T),
    /// Refused; nothing changed.
    Error(Refusal),
}

impl<T> From<Result<T, Refusal>> for Reply<T> {
    fn from(r: Result<T, Refusal>) -> Self {
        match r {
            Ok(t) => Reply::Ok(t),
            Err(e) => Reply::Error(e),
        }
    }
}

impl<T> From<Reply<T>> for Result<T, Refusal> {
    fn from(r: Reply<T>) -> Self {
        match r {
            Reply::Ok(t) => Ok(t),
            Reply::Error(e) => Err(e),
        }
    }
}

pub use crate::page::{DEFAULT_LIST, MAX_LIST, page_limit};

/// Where a command's events landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    /// The stream written to.
    pub stream: crate::StreamName,
    /// Id of the (first) event written: the command's id.
    pub event_id: Uuid,
    /// Its global position.
    pub position: u64,
    /// Its version in the stream.
    pub stream_version: u64,
    /// True when this command had already been carried out (a retry): nothing new was stored
    /// and this is the original outcome.
    #[serde(default)]
    pub duplicate: bool,
}

/// What a field site answers for a command it took into its outbox instead of carrying it
/// out (`vigil site`, docs/ARCHITECTURE.md "Field sites"): on the site's disk, not yet at the
/// centre. The site forwards it with the same id when its link is up; the centre's answer is
/// then on `vigil.local.status.<id>` at the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedAtSite {
    /// Always true: tells this answer from a [`Written`].
    pub accepted_at_site: bool,
    /// The site that holds it.
    pub site: String,
    /// The command's id (the one it will carry to the centre).
    pub id: Uuid,
    /// Its place in the site's outbox (forwarded in this order).
    pub position: u64,
    /// True when the site already had this id (a resend): the original item.
    pub duplicate: bool,
    /// The item's state in the outbox (`pending`, `forwarded`, `refused`).
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_and_replies_have_the_documented_shape() {
        let c: Command<serde_json::Value> = serde_json::from_value(json!({
            "id": "0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f",
            "actor": {"user": "fso.ali", "role": "field_officer", "scope": "SO"},
            "source": "http", "body": {"x": 1}
        }))
        .unwrap();
        assert_eq!(c.actor.role, Role::FieldOfficer);
        assert_eq!(c.meta().role.as_deref(), Some("field_officer"));
        assert!(c.actor.covers(Country::parse("SO").unwrap()));
        assert!(!c.actor.covers(Country::parse("KE").unwrap()));
        let duty = Actor {
            user: "d".into(),
            role: Role::DutyOfficer,
            scope: None,
            agency: None,
        };
        assert!(duty.covers(Country::parse("KE").unwrap()));

        let r: Reply<u32> = Err(Refusal::conflict("closed")).into();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"error": {"code": "conflict", "message": "closed"}})
        );
        assert_eq!(RefusalCode::IdReused.http_status(), 409);
        for code in [
            RefusalCode::Invalid,
            RefusalCode::NotFound,
            RefusalCode::Forbidden,
            RefusalCode::Conflict,
            RefusalCode::IdReused,
            RefusalCode::Unavailable,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
        assert!(
            serde_json::from_value::<Actor>(json!({"user": "u", "role": "root"})).is_err(),
            "unknown roles are refused"
        );
    }
}
