//! The OpenAPI 3.1 document, generated from the route table ([`crate::ROUTES`], each route
//! with its [`Doc`]) and the body types ([`crate::bodies`], `ToSchema`): served at
//! `GET /openapi.json` and shown by the Swagger UI page at `/docs/`.
//!
//! # Promises
//! - Every route of [`crate::ROUTES`] is in the document with its method, its path
//!   parameters, its request body's schema where it takes one (with the client `id` where the
//!   route takes one), its answers' schemas, and the one error body (`Error`) for each
//!   refusal it can give; every `$ref` resolves (tested below).
//! - The list routes ([`crate::LIST_ROUTES`]), and only those, answer the shared `Page`,
//!   each with its `items` documented as its item type ([`Doc::list`] takes it: the log's
//!   `RecordedEvent`, and for the services' lists the type in `events::domain` that the
//!   owning service answers).
//! - The document is built once, on first use, and is the same for the life of the process.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    Required,
};

use crate::auth::Access;
use crate::bodies::{ErrorBody, PageShape};
use crate::{LIST_ROUTES, ROUTES, RouteSpec};

type Schemas = Vec<(String, RefOr<Schema>)>;
/// Registers a type's schema (and those it refers to) and answers a reference to it.
type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

fn component<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// Whether a body carries the client's `id` (a UUID: the idempotency key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientId {
    /// The body has no `id` (login).
    None,
    /// An optional `id`: a resend with the same id is stored once.
    Optional,
    /// A required `id` (a report: its id is the incident's).
    Required,
}

/// What one answer carries.
#[derive(Clone, Copy)]
enum Content {
    /// JSON of a Rust type.
    Json(SchemaFn),
    /// A JSON object the owning service shapes (a case, an order, a board).
    Object,
    /// Text of a media type (CAP XML, Atom).
    Text(&'static str),
    /// No body (the WebSocket's 101).
    Empty,
}

/// The documentation of one route: with the route in [`crate::ROUTES`], so that no route
/// exists without it.
#[derive(Clone)]
pub struct Doc {
    summary: &'static str,
    body: Option<(SchemaFn, ClientId)>,
    answers: Vec<(u16, &'static str, Content)>,
    query: Vec<(&'static str, &'static str, Type)>,
    /// A list's item type (`None`: not a list).
    items: Option<SchemaFn>,
}

impl Doc {
    /// A route described by `summary`.
    pub fn new(summary: &'static str) -> Self {
        Self {
            summary,
            body: None,
            answers: Vec::new(),
            query: Vec::new(),
            items: None,
        }
    }

    /// Reads a JSON body of type `T`.
    pub fn body<T: crate::bodies::RequestBody>(mut self, id: ClientId) -> Self {
        self.body = Some((component::<T>, id));
        self
    }

    /// Answers `status` with a `T`.
    pub fn answers<T: ToSchema>(mut self, status: u16, what: &'static str) -> Self {
        self.answers
            .push((status, what, Content::Json(component::<T>)));
        self
    }

    /// Answers `status` with a JSON object the owning service shapes.
    pub fn answers_object(mut self, status: u16, what: &'static str) -> Self {
        self.answers.push((status, what, Content::Object));
        self
    }

    /// Answers `status` with text of `media_type`.
    pub fn answers_text(
        mut self,
        status: u16,
        what: &'static str,
        media_type: &'static str,
    ) -> Self {
        self.answers.push((status, what, Content::Text(media_type)));
        self
    }

    /// Answers `status` with no body.
    pub fn answers_empty(mut self, status: u16, what: &'static str) -> Self {
        self.answers.push((status, what, Content::Empty));
        self
    }

    /// A command: reads `T` (optional client `id`), answers 200 with an acknowledgement.
    pub fn command<T: crate::bodies::RequestBody>(summary: &'static str) -> Self {
        Self::new(summary)
            .body::<T>(ClientId::Optional)
            .answers::<crate::bodies::Acknowledged>(
                200,
                "Done, durable on disk (or, for a resend of the same id, the first answer)",
            )
    }

    /// A creation: reads `T` (optional client `id`, the new thing's), answers 201, or 200 for
    /// a resend.
    pub fn create<T: crate::bodies::RequestBody>(summary: &'static str) -> Self {
        Self::new(summary)
            .body::<T>(ClientId::Optional)
            .answers::<crate::bodies::Acknowledged>(201, "Created, durable on disk")
            .answers::<crate::bodies::Acknowledged>(
                200,
                "Already created (a resend of the same id): the first answer",
            )
    }

    /// A read of one thing, shaped by its service.
    pub fn read(summary: &'static str) -> Self {
        Self::new(summary).answers_object(200, "Found")
    }

    /// A list of `T`s: one page of the shared shape, paged with `limit` and `cursor`.
    pub fn list<T: ToSchema>(summary: &'static str) -> Self {
        let mut doc = Self::new(summary)
            .query(
                "limit",
                "At most this many, 1 to 500 (default 100)",
                Type::Integer,
            )
            .query(
                "cursor",
                "The previous page's `next`, with the same filters",
                Type::String,
            );
        doc.items = Some(component::<T>);
        doc
    }

    /// Takes query parameter `name`.
    pub fn query(mut self, name: &'static str, what: &'static str, ty: Type) -> Self {
        self.query.push((name, what, ty));
        self
    }
}

/// The refusals a route can give, with why (all in the one `Error` body).
fn refusals(spec: &RouteSpec, doc: &Doc) -> Vec<(u16, &'static str)> {
    let mut v = Vec::new();
    if spec.access != Access::Public {
        v.push((401, "No valid token (`unauthorized`, `invalid_token`)"));
        v.push((
            403,
            "The role or scope may not (`forbidden`, `second_person_required`)",
        ));
    }
    if doc.body.is_some() {
        v.push((400, "Malformed JSON (`malformed_json`)"));
        v.push((413, "The body is over 64 KiB (`too_large`)"));
        v.push((
            415,
            "Not sent as application/json (`unsupported_media_type`)",
        ));
        v.push((422, "A field is missing, wrong or out of range; the message names it (`invalid`, `invalid_body`)"));
    } else if !doc.query.is_empty() {
        v.push((
            400,
            "An unknown or malformed query parameter (`invalid_query`)",
        ));
        v.push((422, "A value out of range (`invalid`)"));
    }
    if spec.path.contains('{') {
        v.push((
            404,
            "Nothing with that id that the caller can see (`not_found`)",
        ));
    }
    if spec.path.starts_with("/api/v1/")
        && spec.path != "/api/v1/events"
        && spec.path != "/api/v1/auth/login"
        && !spec.path.starts_with("/api/v1/boards")
    {
        if doc.body.is_some() {
            v.push((409, "The state does not allow it, or the id was used for other content (`conflict`, `id_reused`)"));
        }
        v.push((503, "The owning service or the store is not answering; retry with the same id (`unavailable`)"));
    }
    if spec.path.starts_with("/api/v1/incidents") && spec.method == "POST"
        || spec.path == "/api/v1/auth/login"
        || spec.access != Access::Public
    {
        v.push((
            429,
            "Too many requests; `Retry-After` says when to retry (`rate_limited`)",
        ));
    }
    v.sort_by_key(|(s, _)| *s);
    v.dedup_by_key(|(s, _)| *s);
    v
}

fn operation(spec: &RouteSpec, doc: &Doc, schemas: &mut Schemas) -> Operation {
    let mut op = OperationBuilder::new().summary(Some(doc.summary));
    if spec.access != Access::Public {
        op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    for name in spec
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    {
        let mut ty = ObjectBuilder::new().schema_type(Type::String);
        if name == "id" {
            ty = ty.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        }
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ty)),
        );
    }
    for (name, what, ty) in &doc.query {
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(*what))
                .schema(Some(ObjectBuilder::new().schema_type(ty.clone()))),
        );
    }
    if let Some((schema, id)) = doc.body {
        let schema = with_client_id(schema(schemas), id, schemas);
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .build(),
        ));
    }
    let mut responses = ResponsesBuilder::new();
    for (status, what, content) in &doc.answers {
        let mut r = ResponseBuilder::new().description(*what);
        match content {
            Content::Json(schema) => {
                let mut schema = schema(schemas);
                if let Some(items) = doc.items {
                    schema = AllOfBuilder::new()
                        .item(schema)
                        .item(
                            ObjectBuilder::new()
                                .property("items", ArrayBuilder::new().items(items(schemas)))
                                .required("items"),
                        )
                        .into();
                }
                r = r.content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                );
            }
            Content::Object => {
                r = r.content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                );
            }
            Content::Text(media) => {
                r = r.content(
                    *media,
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
            }
            Content::Empty => {}
        }
        responses = responses.response(status.to_string(), r.build());
    }
    for (status, _why) in refusals(spec, doc) {
        responses = responses.response(status.to_string(), Ref::from_response_name("Error"));
    }
    op.responses(responses.build()).build()
}

/// The page of a list route: the shared `Page`, once for every list route.
fn page_doc(doc: Doc, path: &str) -> Doc {
    if doc.items.is_some() && LIST_ROUTES.contains(&path) {
        doc.answers::<PageShape>(200, "One page")
    } else {
        doc
    }
}

/// A body's schema with the client's `id` added to its properties: a new component named
/// `<Type>Request`, since the type itself (often a domain event) has no `id`.
fn with_client_id(schema: RefOr<Schema>, id: ClientId, schemas: &mut Schemas) -> RefOr<Schema> {
    let RefOr::Ref(r) = &schema else {
        return schema;
    };
    if id == ClientId::None {
        return schema;
    }
    let name = r
        .ref_location
        .trim_start_matches("#/components/schemas/")
        .to_owned();
    let Some(RefOr::T(Schema::Object(mut object))) = schemas
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.clone())
    else {
        return schema;
    };
    let description = match id {
        ClientId::Required => {
            "A UUID chosen by the client, e.g. from crypto.randomUUID(): the new thing's id and the idempotency key (a resend with the same id is stored once; the same id with other content is refused 409 `id_reused`)"
        }
        _ => {
            "Optional: a UUID chosen by the client, the command's id and idempotency key (a resend with the same id is answered with the first outcome, never applied twice)"
        }
    };
    object.properties.insert(
        "id".to_owned(),
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .description(Some(description))
            .into(),
    );
    if id == ClientId::Required {
        object.required.insert(0, "id".to_owned());
    }
    let request = format!("{name}Request");
    schemas.push((request.clone(), RefOr::T(Schema::Object(object))));
    RefOr::Ref(Ref::from_schema_name(request))
}

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

/// Builds the document from the route table.
pub fn build() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    let mut paths = Paths::new();
    for spec in ROUTES {
        let doc = page_doc(crate::doc(spec), spec.path);
        let op = operation(spec, &doc, &mut schemas);
        paths.add_path_operation(spec.path, vec![method(spec.method)], op);
    }
    let error = component::<ErrorBody>(&mut schemas);
    let mut components = ComponentsBuilder::new()
        .response(
            "Error",
            ResponseBuilder::new()
                .description("Refused; nothing was changed. The code is stable, the message says what to do next.")
                .content("application/json", ContentBuilder::new().schema(Some(error)).build())
                .build(),
        )
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    // The same type may be registered by several routes: one component each.
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Vigil API")
                .version("1")
                .description(Some(
                    "The crisis-coordination centre's HTTP API, generated from the gateway's route table and body types. Every error is JSON {\"error\":{\"code\",\"message\"}}; the message says what to do next. Bodies are JSON, at most 64 KiB. Tokens: POST /api/v1/auth/login or `vigil token create`, sent as `Authorization: Bearer <token>`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        build().to_json().unwrap_or_else(|e| {
            format!("{{\"error\":{{\"code\":\"internal\",\"message\":\"{e}\"}}}}")
        })
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    /// Follows a local `$ref` (`#/components/…`).
    fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
        let pointer = r.strip_prefix('#')?;
        doc.pointer(pointer)
    }

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => resolve(doc, r).unwrap_or(&Value::Null),
            None => v,
        }
    }

    #[test]
    fn every_route_is_documented_with_its_bodies_and_refusals() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let error = json!({"$ref": "#/components/schemas/ErrorBody"});
        for route in ROUTES {
            let what = format!("{} {}", route.method, route.path);
            let op = &doc["paths"][route.path][route.method.to_lowercase()];
            assert!(op.is_object(), "{what} is not in the document");
            let responses = op["responses"].as_object().unwrap();
            // Its success answer, with a schema (the WebSocket's 101 has no body).
            let ok: Vec<_> = responses
                .keys()
                .filter(|s| s.starts_with('2') || *s == "101")
                .collect();
            assert!(!ok.is_empty(), "{what} has no success answer");
            for status in &ok {
                let content = &responses[status.as_str()]["content"];
                if route.path != "/ws" {
                    let schema = content
                        .as_object()
                        .and_then(|c| c.values().next())
                        .map(|c| &c["schema"]);
                    assert!(
                        schema.is_some_and(Value::is_object),
                        "{what} {status} has no schema"
                    );
                }
            }
            // Its refusals, each with the one error body.
            let refused: Vec<_> = responses
                .keys()
                .filter(|s| s.starts_with('4') || s.starts_with('5'))
                .collect();
            if route.path != "/healthz" && route.path != "/openapi.json" && route.path != "/readyz"
            {
                assert!(!refused.is_empty(), "{what} names no refusal");
            }
            for status in refused {
                let r = deref(&doc, &responses[status.as_str()]);
                if route.path == "/readyz" {
                    // Not ready is an answer, not a refusal: the same body as ready.
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Readiness"
                    );
                    continue;
                }
                assert_eq!(
                    r["content"]["application/json"]["schema"], error,
                    "{what} {status}"
                );
            }
            // Its body, where it takes one.
            let takes_body = route.method == "POST" || route.method == "PUT";
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            assert_eq!(body.is_object(), takes_body, "{what}: request body {body}");
            if takes_body {
                let schema = deref(&doc, body);
                assert_eq!(schema["type"], "object", "{what}: {schema}");
                if route.path != "/api/v1/auth/login" {
                    assert_eq!(
                        schema["properties"]["id"]["format"], "uuid",
                        "{what} takes a client id"
                    );
                }
            }
            // Its path parameters.
            for name in route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{what} lacks path parameter {name}"
                );
            }
        }
        // Nothing documented that is not a route.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.path == path && r.method.to_lowercase() == *method),
                    "{method} {path} is documented but not a route"
                );
            }
        }
    }

    #[test]
    fn every_ref_resolves() {
        let doc = doc();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(
            all.len() > 100,
            "the document refers to its components: {}",
            all.len()
        );
        for r in all {
            assert!(
                resolve(&doc, &r).is_some_and(Value::is_object),
                "{r} does not resolve"
            );
        }
    }

    #[test]
    fn the_bodies_are_the_types_the_gateway_reads() {
        let doc = doc();
        let report = &doc["paths"]["/api/v1/incidents"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let report = deref(&doc, report);
        assert_eq!(
            report["required"][0], "id",
            "a report's id is required: {report}"
        );
        for field in ["country", "category", "severity", "title", "occurred_at"] {
            assert!(
                report["required"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(field)),
                "{field}"
            );
        }
        assert!(
            report["properties"].get("reporter").is_none(),
            "the reporter is the login"
        );
        assert_eq!(report["additionalProperties"], false);
        let issue = &doc["paths"]["/api/v1/broadcasts"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let issue = deref(&doc, issue);
        for field in ["title", "body", "severity", "audience"] {
            assert!(
                issue["required"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(field)),
                "{field}: {issue}"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["Country"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(249)
        );
    }

    #[test]
    fn every_list_route_and_only_those_answer_the_shared_page() {
        let doc = doc();
        let page = json!({"$ref": "#/components/schemas/Page"});
        assert_eq!(
            doc["components"]["schemas"]["Page"]["required"],
            json!(["items", "position", "next"])
        );
        assert!(doc["components"]["schemas"]["Page"]["properties"]["next"].is_object());
        for route in ROUTES.iter().filter(|r| r.method == "GET") {
            let op = &doc["paths"][route.path]["get"];
            let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
            let paged = schema["allOf"]
                .as_array()
                .is_some_and(|all| all.contains(&page));
            let listed = LIST_ROUTES.contains(&route.path);
            assert_eq!(paged, listed, "GET {}: {schema}", route.path);
            if listed {
                // Its items, as a named type that names its fields.
                let item = schema["allOf"]
                    .as_array()
                    .and_then(|all| {
                        all.iter()
                            .find_map(|s| s["properties"]["items"]["items"]["$ref"].as_str())
                    })
                    .unwrap_or_else(|| {
                        panic!("GET {} documents no item type: {schema}", route.path)
                    });
                let item = resolve(&doc, item).unwrap_or(&Value::Null);
                assert!(
                    item["properties"].is_object() || item["allOf"].is_array(),
                    "GET {}: an item names its fields: {item}",
                    route.path
                );
                let params = op["parameters"].as_array().unwrap();
                for p in ["limit", "cursor"] {
                    assert!(
                        params.iter().any(|q| q["name"] == p && q["in"] == "query"),
                        "GET {} lacks {p}",
                        route.path
                    );
                }
            }
        }
        for path in LIST_ROUTES {
            assert!(
                ROUTES.iter().any(|r| r.method == "GET" && r.path == *path),
                "{path} is not a route"
            );
        }
    }
}
