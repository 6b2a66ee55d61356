//! The HTTP bodies as Rust types: what each route reads and what it answers.
//!
//! The OpenAPI document ([`crate::openapi`]) is generated from these types, so what it says a
//! route reads is what the gateway checks, and what it says a route answers is what the
//! handler serialises.
//!
//! # Promises
//! - A request body is read through [`Body`]: the checks of every JSON body (415 without a
//!   JSON content type, 413 over [`crate::MAX_BODY_BYTES`], 400 malformed JSON, 422
//!   `invalid_body` for a key named twice or a body that is not an object), then the client's
//!   `id` taken out (422 `invalid` when it is not a UUID, or missing where it is required),
//!   then the rest read as the route's type, with the refusal the owning service gives for a
//!   body it cannot read: 422 `invalid`, naming the field (`location.lat: invalid type…`),
//!   and fields the service fills in (`reporter`, `by`: the login) refused by name.
//! - The check happens where the service used to be the first to look (after the path's id
//!   and the rate limits), so the order of refusals is the one of before.
//! - What the service receives over NATS does not change: the body's fields as the client
//!   sent them, without the `id` (which becomes the command's id). A body the owning service
//!   reads as a type of `events::domain` (an event, or a command's own body such as
//!   `hostage::ReleaseMany`) is read here as that same type, never a copy; the types defined
//!   here are the gateway's own (a body less what the login fills in, the answers).

use std::marker::PhantomData;

use axum::extract::FromRequest;
use axum::http::StatusCode;
use events::domain::incident::{Casualties, IncidentCategory, Location};
use events::validate::{Country, SecurityLevel, Severity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::{ApiError, ApiJson};

/// A request body type: the fields of one route's JSON body (without the client's `id`).
pub trait RequestBody: serde::de::DeserializeOwned + ToSchema + Send + 'static {
    /// Fields the service fills in itself (from the login, from reference data) and refuses
    /// in the body, each with why.
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[];
}

/// Why a field filled in from the login is refused in the body.
const FROM_LOGIN: &str = "is taken from your login; leave it out";

/// A route's JSON body, read with the checks of every body (see the module doc); the typed
/// read is [`Body::read`], called where the service used to be the first to look.
pub struct Body<T> {
    fields: Map<String, Value>,
    _type: PhantomData<fn() -> T>,
}

impl<T, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let ApiJson(fields) = ApiJson::<Map<String, Value>>::from_request(req, state).await?;
        Ok(Self {
            fields,
            _type: PhantomData,
        })
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

impl<T: RequestBody> Body<T> {
    /// Takes the client's UUID out of the body: `required` for reports, optional for the rest.
    pub fn take_id(&mut self, required: bool) -> Result<Option<Uuid>, ApiError> {
        take_id(&mut self.fields, required)
    }

    /// Whether the body names `field`.
    pub fn contains(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// Reads the body (without its `id`) as `T`, as the service reads it (NFC first); answers
    /// the typed body and the fields to send on, unchanged.
    pub fn read(self) -> Result<(T, Map<String, Value>), ApiError> {
        if let Some((field, why)) = T::NOT_IN_BODY
            .iter()
            .find(|(f, _)| self.fields.contains_key(*f))
        {
            return Err(invalid(format!("{field}: {why}")));
        }
        let mut tree = Value::Object(self.fields.clone());
        events::validate::nfc_json(&mut tree);
        let typed = events::codec::from_value::<T>(tree).map_err(invalid)?;
        Ok((typed, self.fields))
    }
}

/// Takes the client's UUID out of a body: `required` for reports, optional for the rest.
pub fn take_id(body: &mut Map<String, Value>, required: bool) -> Result<Option<Uuid>, ApiError> {
    match body.remove("id") {
        None if required => Err(invalid(
            "id: a UUID chosen by the client is required (it makes a resend safe: the same id is stored once)",
        )),
        None => Ok(None),
        Some(Value::String(s)) => Uuid::parse_str(&s)
            .map(Some)
            .map_err(|_| invalid("id: must be a UUID, e.g. from crypto.randomUUID()")),
        Some(_) => Err(invalid("id: must be a UUID string")),
    }
}

// --- Request bodies the domain events already are (the service reads the body as the event).

impl RequestBody for events::domain::incident::IncidentUpdated {}
impl RequestBody for events::domain::incident::IncidentEscalated {}
impl RequestBody for events::domain::incident::IncidentClosed {}
impl RequestBody for events::domain::hostage::HostageCaseOpened {}
impl RequestBody for events::domain::hostage::ProofOfLifeReceived {}
impl RequestBody for events::domain::hostage::NegotiationContactLogged {}
impl RequestBody for events::domain::hostage::HostageReleased {}
impl RequestBody for events::domain::hostage::HostageDeceased {}
impl RequestBody for events::domain::hostage::HostageCaseClosed {}
impl RequestBody for events::domain::surge::SurgeRequested {}
impl RequestBody for events::domain::surge::SurgeDeployed {}
impl RequestBody for events::domain::surge::SurgeCompleted {}
impl RequestBody for events::domain::relocation::RelocationOrdered {}
impl RequestBody for events::domain::relocation::OrderCompleted {}
impl RequestBody for events::domain::relocation::OrderRescinded {}
impl RequestBody for events::domain::clearance::ClearanceRequested {}
impl RequestBody for events::domain::clearance::ArrivalRecorded {}
impl RequestBody for events::domain::clearance::DepartureRecorded {}

// --- Request bodies that are commands' own types (in `events`, beside the events they lead
// to), read by the owning service as the same type.

impl RequestBody for events::domain::hostage::ReleaseMany {}
impl RequestBody for events::domain::hostage::ProofOfLifeMany {}
impl RequestBody for events::domain::relocation::MarkPerson {}
impl RequestBody for events::domain::relocation::MarkPersons {}
impl RequestBody for events::domain::broadcast::IssueBroadcast {}
impl RequestBody for events::domain::broadcast::CancelBroadcast {}
impl RequestBody for events::domain::surge::AssignOfficer {
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[(
        "from_duty_station",
        "is taken from the officer's registered duty station; leave it out",
    )];
}

// --- Request bodies of the gateway's own: the event less what the login fills in.

/// A flash report (`POST /api/v1/incidents`): the incident's fields; the reporter is the login.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIncident {
    /// Where it happened.
    pub country: Country,
    /// What kind of incident.
    pub category: IncidentCategory,
    /// How severe, 1 to 5.
    pub severity: Severity,
    /// One line, at most 200 characters, no control or bidi characters.
    pub title: String,
    /// When it happened (RFC 3339), at most 30 days ago and not in the future.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Where exactly, if known.
    #[serde(default)]
    pub location: Option<Location>,
    /// The duty station concerned, registered in the report's country.
    #[serde(default)]
    pub duty_station: Option<String>,
    /// Free text, at most 10 000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Casualties, if known.
    #[serde(default)]
    pub casualties: Option<Casualties>,
}

impl RequestBody for ReportIncident {
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[("reporter", FROM_LOGIN)];
}

/// A duty officer confirms a report; the verifier is the login.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// How it was verified.
    #[serde(default)]
    pub note: Option<String>,
}

impl RequestBody for Verification {
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[("by", FROM_LOGIN)];
}

/// A decision that takes no fields (an approval); the decider is the login.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {}

impl RequestBody for Approval {
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[("by", FROM_LOGIN)];
}

/// A decision with a reason (a rejection, a refusal, a cancellation); the decider is the login.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why.
    pub reason: String,
}

impl RequestBody for Decision {
    const NOT_IN_BODY: &'static [(&'static str, &'static str)] = &[("by", FROM_LOGIN)];
}

/// A command that takes no fields (besides the optional client `id`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

impl RequestBody for NoFields {}

/// `PUT /api/v1/areas/{area}/level`: the area is the path's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLevel {
    /// 1 Minimal … 6 Extreme.
    pub level: SecurityLevel,
    /// Why.
    pub reason: String,
}

impl RequestBody for SetLevel {}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// At most 128 bytes.
    pub username: String,
    /// At most 1024 bytes.
    pub password: String,
}

impl RequestBody for LoginRequest {}

// --- Answers.

/// Every refusal: a stable code and a message that says what to do next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The refusal.
    pub error: ErrorDetail,
}

/// The refusal in [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid`, `invalid_body`, `malformed_json`, `not_found`,
    /// `forbidden`, `second_person_required`, `conflict`, `id_reused`, `unavailable`,
    /// `rate_limited`, `unauthorized`, `invalid_token`, `too_large`, …
    #[schema(examples("invalid", "not_found", "forbidden", "rate_limited"))]
    pub code: String,
    /// What happened and what to do next.
    pub message: String,
}

/// What a written command answers (the same body on every retry with the same id).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Acknowledged {
    /// The thing's id (a report's or a creation's client id, or the path's).
    pub id: Uuid,
    /// The stream written (`incident-<id>`).
    pub stream: String,
    /// The event's id.
    pub event_id: Uuid,
    /// Its position in the log.
    pub position: u64,
    /// Its version in its stream.
    pub stream_version: u64,
    /// For an event a broadcast rule may fire on: where the broadcasts it caused are listed
    /// (`/api/v1/broadcasts?caused_by=<event id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered: Option<String>,
}

/// What a write answers at a field site (HTTP 202): the site took the command into its
/// outbox (on its disk) and forwards it to the centre, with the same id, when its link is
/// up; the centre has not seen it yet. Resending the same id is answered the same way.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingAtSite {
    /// The thing's id (the report's client id, or the path's).
    pub id: Uuid,
    /// The command's id: the one it carries to the centre.
    pub command_id: Uuid,
    /// Always true: not yet at the centre.
    pub pending_at_site: bool,
    /// The field site that holds it.
    pub site: String,
    /// Its place in the site's outbox (forwarded in this order).
    pub outbox_position: u64,
    /// Where it stands in the outbox (`pending`; `forwarded` or `refused` on a resend after
    /// the centre answered).
    pub state: String,
    /// True when the site already had this id (a resend).
    pub duplicate: bool,
    /// In words, for people.
    pub message: String,
}

/// `GET /api/v1/site/state`: a field site's link to the centre and its outbox (only on the
/// gateway of a field site, `vigil site`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SiteState {
    /// The site's name.
    pub site: String,
    /// The country it works for.
    pub scope: String,
    /// The link to the centre as the site's forwarder last saw it.
    pub link: SiteLink,
    /// Commands accepted at the site and not yet answered by the centre.
    pub pending: u64,
    /// Commands the centre carried out.
    pub forwarded: u64,
    /// Commands the centre refused.
    pub refused: u64,
}

/// The link of [`SiteState`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SiteLink {
    /// Whether the centre answered the site's last request.
    pub up: bool,
    /// Since when it is in that state (RFC 3339, the site's clock).
    pub since: String,
    /// For how long, in whole seconds (by the site's clock, so a screen with a wrong clock
    /// still shows it right).
    #[serde(default)]
    pub for_seconds: u64,
    /// Why it is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What `PUT /api/v1/areas/{area}/level` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LevelSet {
    /// The area.
    pub area: String,
    /// The stream written (`level-<area>`).
    pub stream: String,
    /// The event's id.
    pub event_id: Uuid,
    /// Its position in the log.
    pub position: u64,
    /// Its version in its stream.
    pub stream_version: u64,
    /// Where the broadcasts this change caused are listed.
    pub triggered: String,
}

/// A session token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// The user's role.
    #[schema(value_type = String, examples("duty_officer"))]
    pub role: events::command::Role,
    /// The country a field officer is limited to.
    pub scope: Option<String>,
    /// The agency a focal point speaks for.
    pub agency: Option<String>,
    /// When the token expires (RFC 3339).
    pub expires_at: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    pub status: &'static str,
}

/// `GET /readyz`: 200 when ready, 503 with the same body when not.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// NATS connected, the store answering, the boards caught up.
    pub ready: bool,
    /// NATS connected.
    pub nats: bool,
    /// The store answering.
    pub store: bool,
    /// The log's head, when the store answered.
    pub head: Option<u64>,
    /// The position the boards have folded.
    pub board_position: u64,
    /// The boards within a small lag of the head.
    pub caught_up: bool,
    /// On a node of several (`vigil up --cluster-node`): the cluster as this gateway sees it.
    /// Absent on a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReadiness>,
    /// At a field site whose store does not answer yet: what it waits for ("waiting for the
    /// centre's events"). Absent at the centre.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The centre's domain services (`vigil up`, `vigil gateway`): not ready until every one
    /// answers ready. Absent for a gateway started without them (tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesReadiness>,
}

/// `GET /readyz`: the domain services, from their last answers to `vigil.status` (asked
/// twice a second, not per request).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServicesReadiness {
    /// Every service answered, and every instance that answered is ready.
    pub ready: bool,
    /// The services not ready yet, each with why: no instance answered, or what one is still
    /// loading (its register reading the log, with its position and the head it must reach).
    pub waiting_for: Vec<ServiceWait>,
}

/// A service `/readyz` is waiting for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceWait {
    /// The service (`incidents`, `relocation`, …).
    pub service: String,
    /// Why it is not ready.
    pub reason: String,
}

/// `GET /readyz` on a cluster node: the store leader and this node's replica, from the
/// replicas' last answers to `vigil.store.status` (asked every second, not per request).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterReadiness {
    /// This node's name (`--cluster-node`).
    pub node: String,
    /// A store leader answered within the last 3 s. Not ready without one.
    pub leader_known: bool,
    /// The leader's node, when known.
    pub leader: Option<String>,
    /// The leader's last log position, when known.
    pub leader_head: Option<u64>,
    /// This node's store replica answered in the last round.
    pub replica_answering: bool,
    /// Its role (`leader` or `follower`), when it answered.
    pub replica_role: Option<String>,
    /// Its last log position, when it answered.
    pub replica_head: Option<u64>,
    /// The last journal sequence it applied, when it answered.
    pub replica_journal_seq: Option<u64>,
    /// Log positions it is behind the leader (when both answered). Reported only: the
    /// gateway reads and appends through the leader.
    pub lag: Option<u64>,
    /// Journal messages it is behind the leader (when both answered).
    pub journal_lag: Option<u64>,
    /// How long ago the last round of answers ended (null before the first).
    pub checked_ms_ago: Option<u64>,
}

/// The one shape of every list (see [`events::page`]). Page with `?limit=` (1 to 500,
/// default 100; outside that 422) and `?cursor=` (the previous page's `next`, with the same
/// filters); a cursor this list did not make is refused 422 `invalid`. Following `next`
/// until it is null lists each matching item exactly once, whatever is added meanwhile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Page)]
pub struct PageShape {
    /// This page, in the list's order (lists newest first, the log oldest first).
    pub items: Vec<Value>,
    /// The log position the list reflects (for the log: its head).
    pub position: u64,
    /// Opaque cursor of the following page (`?cursor=`), or null on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_client_id_is_taken_out_of_the_body() {
        let mut body = json!({"id": "0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f", "x": 1});
        let map = body.as_object_mut().unwrap();
        assert!(take_id(map, true).unwrap().is_some());
        assert!(!map.contains_key("id"));
        assert!(take_id(map, true).is_err(), "a report needs its id");
        assert_eq!(take_id(map, false).unwrap(), None);
        map.insert("id".into(), json!("not-a-uuid"));
        assert!(take_id(map, false).is_err());
        map.insert("id".into(), json!(7));
        assert!(take_id(map, false).is_err());
    }

    fn body<T>(v: Value) -> Body<T> {
        Body {
            fields: v.as_object().cloned().unwrap(),
            _type: PhantomData,
        }
    }

    fn refusal(e: ApiError) -> (StatusCode, String, String) {
        let (status, code, message) = e.parts();
        (status, code.to_owned(), message.to_owned())
    }

    #[test]
    fn a_body_is_read_as_its_type_and_sent_on_unchanged() {
        let v = json!({"country": "SO", "category": "crime", "severity": 3, "title": "Cafe\u{301}",
                       "occurred_at": "2026-11-27T01:00:00Z", "location": {"lat": 2.0, "lon": 45.0}});
        let (typed, fields) = body::<ReportIncident>(v.clone()).read().unwrap();
        assert_eq!(typed.severity.get(), 3);
        assert_eq!(
            Value::Object(fields),
            v,
            "the service gets what the client sent"
        );
    }

    #[test]
    fn a_wrong_field_is_refused_naming_it_as_the_service_does() {
        let v = json!({"country": "SO", "category": "crime", "severity": 3, "title": "x",
                       "occurred_at": "2026-11-27T01:00:00Z", "location": {"lat": "north", "lon": 45.0}});
        let (status, code, message) = refusal(body::<ReportIncident>(v).read().unwrap_err());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code, "invalid");
        assert!(message.starts_with("location.lat:"), "{message}");

        let (_, code, message) = refusal(
            body::<Decision>(json!({"reason": "no", "by": "me"}))
                .read()
                .unwrap_err(),
        );
        assert_eq!(code, "invalid");
        assert_eq!(message, "by: is taken from your login; leave it out");

        let (_, code, message) = refusal(
            body::<NoFields>(json!({"weather": "fine"}))
                .read()
                .unwrap_err(),
        );
        assert_eq!(code, "invalid");
        assert!(message.contains("weather"), "{message}");
        assert!(body::<NoFields>(json!({})).read().is_ok());
    }
}
