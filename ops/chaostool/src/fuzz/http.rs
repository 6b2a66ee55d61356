//! Target 3, **http**: every route of `gateway::ROUTES`, its `{id}`/`{area}`/`{board}`
//! filled with valid and random values, random queries, and bodies of random JSON, random
//! bytes, bodies over the 64 KiB limit, deep nesting and wrong content types — and, for
//! every route that reads a body, bodies drawn from its schema in the gateway's generated
//! OpenAPI document ([`super::schema`]): valid ones, and invalid ones with one thing wrong —
//! with a duty officer's token: every answer is a 2xx, a 4xx or a 503; every 4xx and 503 is
//! JSON `{"error":{"code","message"}}`; a body the document calls invalid is never answered
//! 2xx; nothing takes longer than [`HANG`] plus [`GRACE`].
//!
//! The requests go over a raw TCP socket, not an HTTP client library: a fuzzer must be able
//! to send what a client library refuses to build (any bytes in the path, a body with a
//! wrong content type), and to hear an answer the server gives before it has read the body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::codec;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::catalog::Catalog;
use super::schema::{Bodies, Fault};
use super::values::{edge_numbers, json_value, nested};
use super::{GRACE, HANG, HTTP_IN_FLIGHT, MAX_ANSWER, Tally, clip, settle_labelled};
use crate::centre::Centre;

#[derive(Debug, Clone)]
enum HttpBody {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    /// Over the 64 KiB limit: `len` bytes, JSON-looking or not.
    Huge(usize, bool),
    Deep(usize, bool),
}

/// What the document says of a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drawn {
    /// Random, not drawn from the route's schema.
    Random,
    /// Valid by the route's schema.
    Valid,
    /// Invalid by the route's schema, for this reason.
    Invalid(Fault),
}

#[derive(Debug, Clone)]
struct HttpCase {
    route: usize,
    drawn: Drawn,
    /// Percent-encoded values for the route's `{…}` parameters, in order.
    params: Vec<String>,
    query: String,
    content_type: Option<String>,
    body: HttpBody,
}

/// Percent-encodes every byte but the unreserved ones.
pub(super) fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn param(c: &Arc<Catalog>) -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => Just(Uuid::nil().to_string()),
        2 => Just("SO".to_owned()),
        2 => Just("situation".to_owned()),
        2 => proptest::sample::select(c.words.clone()).prop_map(|w| pct(w.as_bytes())),
        2 => "\\PC{0,30}".prop_map(|s| pct(s.as_bytes())),
        2 => vec(any::<u8>(), 0..40).prop_map(|b| pct(&b)),
        1 => "[a-zA-Z0-9._~-]{100,400}",
    ]
    .boxed()
}

/// A route that reads a body, its path filled, and a body drawn from its schema: valid, or
/// with one fault.
fn schema_case(c: &Arc<Catalog>, bodies: &Arc<Bodies>) -> BoxedStrategy<HttpCase> {
    let routes: Vec<usize> = (0..gateway::ROUTES.len())
        .filter(|r| bodies.of(*r).is_some())
        .collect();
    let words = Arc::new(bodies.names.clone());
    let bodies = bodies.clone();
    let c = c.clone();
    proptest::sample::select(routes)
        .prop_flat_map(move |route| {
            let schema = bodies.of(route).unwrap_or_default();
            let fault =
                proptest::option::weighted(0.5, proptest::sample::select(Fault::ALL.to_vec()));
            (
                Just(route),
                Just(schema.clone()),
                vec(param(&c), 3),
                super::schema::valid(&schema, &words),
                fault,
                any::<usize>(),
            )
        })
        .prop_map(|(route, schema, params, body, fault, pick)| {
            let (drawn, body) = match fault.and_then(|f| {
                super::schema::invalid(&schema, body.clone(), f, pick).map(|b| (f, b))
            }) {
                Some((f, bad)) => (Drawn::Invalid(f), bad),
                None => (Drawn::Valid, body),
            };
            HttpCase {
                route,
                drawn,
                params,
                query: String::new(),
                content_type: Some("application/json".to_owned()),
                body: HttpBody::Json(body),
            }
        })
        .boxed()
}

fn http_case(c: &Arc<Catalog>, bodies: &Arc<Bodies>) -> BoxedStrategy<HttpCase> {
    prop_oneof![
        1 => random_case(c),
        1 => schema_case(c, bodies),
    ]
    .boxed()
}

fn random_case(c: &Arc<Catalog>) -> BoxedStrategy<HttpCase> {
    let query_key = prop_oneof![
        4 => proptest::sample::select(vec![
            "view", "limit", "country", "status", "severity", "since", "from", "agency", "token",
            "area", "state",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ];
    let query_value = prop_oneof![
        3 => proptest::sample::select(c.words.clone()),
        2 => proptest::sample::select(edge_numbers()).prop_map(|n| n.to_string()),
        2 => "\\PC{0,16}",
    ];
    let query =
        proptest::option::weighted(0.5, vec((query_key, query_value), 0..4)).prop_map(|pairs| {
            match pairs {
                None => String::new(),
                Some(pairs) => {
                    let parts: Vec<String> = pairs
                        .iter()
                        .map(|(k, v)| format!("{}={}", pct(k.as_bytes()), pct(v.as_bytes())))
                        .collect();
                    format!("?{}", parts.join("&"))
                }
            }
        });
    let content_type = prop_oneof![
        8 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        2 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => Just(Some("multipart/form-data; boundary=x".to_owned())),
        1 => "[a-z]{1,10}/[a-z+.-]{1,12}".prop_map(Some),
    ];
    let body = prop_oneof![
        4 => json_value(c).prop_map(HttpBody::Json),
        2 => vec(any::<u8>(), 0..2048).prop_map(HttpBody::Bytes),
        1 => (64 * 1024 + 1..256 * 1024usize, any::<bool>()).prop_map(|(n, j)| HttpBody::Huge(n, j)),
        1 => (1usize..5_000, any::<bool>()).prop_map(|(n, o)| HttpBody::Deep(n, o)),
        1 => Just(HttpBody::None),
    ];
    (
        0..gateway::ROUTES.len(),
        vec(param(c), 3),
        query,
        content_type,
        body,
    )
        .prop_map(|(route, params, query, content_type, body)| HttpCase {
            route,
            drawn: Drawn::Random,
            params,
            query,
            content_type,
            body,
        })
        .boxed()
}

/// The route's path with its parameters filled.
fn fill(path: &str, params: &[String]) -> String {
    let mut out = String::new();
    let mut rest = path;
    let mut i = 0;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        // A `{…}` segment may not be empty or the route does not match: keep one character.
        let value = params.get(i).map_or("x", String::as_str);
        out.push_str(if value.is_empty() { "-" } else { value });
        i += 1;
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn body_bytes(body: &HttpBody) -> Option<Vec<u8>> {
    match body {
        HttpBody::None => None,
        HttpBody::Json(v) => Some(codec::encode(v)),
        HttpBody::Bytes(b) => Some(b.clone()),
        HttpBody::Huge(n, json) => {
            let mut out = Vec::with_capacity(*n);
            if *json {
                out.extend_from_slice(b"{\"title\":\"");
                out.resize(n.saturating_sub(2).max(out.len()), b'x');
                out.extend_from_slice(b"\"}");
            } else {
                out.extend((0..*n).map(|i| (i % 251) as u8));
            }
            Some(out)
        }
        HttpBody::Deep(n, objects) => Some(nested(*n, *objects, true)),
    }
}

fn describe(case: &HttpCase, method: &str, target: &str) -> String {
    let body = match &case.body {
        HttpBody::None => "no body".to_owned(),
        HttpBody::Json(v) => clip(&v.to_string(), 300),
        HttpBody::Bytes(b) => format!("{} random bytes", b.len()),
        HttpBody::Huge(n, j) => format!("{n} bytes ({})", if *j { "JSON" } else { "binary" }),
        HttpBody::Deep(n, _) => format!("JSON nested {n} deep"),
    };
    format!(
        "{method} {} [{}] ({:?}) {body}",
        clip(target, 200),
        case.content_type.as_deref().unwrap_or("no content type"),
        case.drawn
    )
}

/// One HTTP/1.0 exchange; the body is written while the answer is read, so a server that
/// answers (413) before reading it all is heard.
async fn exchange(
    addr: SocketAddr,
    head: Vec<u8>,
    body: Option<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    // The write half is kept open until the answer is read: a half-closed connection may be
    // dropped by the server before it answers.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&head).await;
        if let Some(b) = body {
            let _ = wr.write_all(&b).await;
        }
        wr
    });
    let mut raw = Vec::new();
    let read = (&mut rd).take(MAX_ANSWER).read_to_end(&mut raw).await;
    writer.abort();
    let _ = writer.await;
    match read {
        Ok(_) => Ok(raw),
        Err(_) if raw.windows(4).any(|w| w == b"\r\n\r\n") => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Whether an answer keeps the promise: 2xx, or a 4xx/503 with a JSON error.
fn judge(raw: &[u8]) -> Result<&'static str, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "not an HTTP answer: {:?}",
            clip(&String::from_utf8_lossy(raw), 200)
        ));
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let label = match status {
        200..=299 => return Ok("2xx"),
        400..=499 => "4xx",
        503 => "503",
        other => {
            return Err(format!(
                "status {other}: {}",
                clip(&String::from_utf8_lossy(body), 200)
            ));
        }
    };
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &json["error"];
    if error["code"].is_string() && error["message"].is_string() {
        Ok(label)
    } else {
        Err(format!(
            "status {status} without a JSON error body: {:?}",
            clip(&String::from_utf8_lossy(body), 200)
        ))
    }
}

/// The figure an answer counts in; a 2xx to a body the document calls invalid breaks the
/// promise (the gateway reads the types the document is generated from).
fn labelled(drawn: Drawn, label: &'static str) -> Result<&'static str, String> {
    Ok(match (drawn, label) {
        (Drawn::Random, label) => label,
        (Drawn::Valid, "2xx") => "schema-valid 2xx",
        (Drawn::Valid, "4xx") => "schema-valid 4xx",
        (Drawn::Valid, _) => "schema-valid 503",
        (Drawn::Invalid(fault), "2xx") => {
            return Err(format!(
                "a body the OpenAPI document calls invalid ({fault:?}) was answered 2xx"
            ));
        }
        (Drawn::Invalid(_), "4xx") => "schema-invalid 4xx",
        (Drawn::Invalid(_), _) => "schema-invalid 503",
    })
}

async fn http_one(
    addr: SocketAddr,
    token: Arc<str>,
    case: HttpCase,
) -> Result<&'static str, String> {
    let Some(spec) = gateway::ROUTES.get(case.route) else {
        return Ok("skipped");
    };
    let target = format!("{}{}", fill(spec.path, &case.params), case.query);
    let body = body_bytes(&case.body);
    let mut head = format!(
        "{} {target} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n",
        spec.method
    );
    if let Some(ct) = &case.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(b) = &body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let started = Instant::now();
    let answer = tokio::time::timeout(HANG + GRACE, exchange(addr, head.into_bytes(), body)).await;
    let what = || describe(&case, spec.method, &target);
    match answer {
        Err(_) => Err(format!(
            "no answer within {} s: {}",
            (HANG + GRACE).as_secs(),
            what()
        )),
        Ok(Err(e)) => Err(format!("connection failed ({e}): {}", what())),
        Ok(Ok(raw)) => {
            let label = judge(&raw).map_err(|e| format!("{e}\n    request: {}", what()))?;
            if started.elapsed() > HANG + GRACE {
                return Err(format!(
                    "answered after {:.1} s: {}",
                    started.elapsed().as_secs_f64(),
                    what()
                ));
            }
            labelled(case.drawn, label).map_err(|e| format!("{e}\n    request: {}", what()))
        }
    }
}

pub(super) async fn fuzz_http(
    centre: &Centre,
    c: &Arc<Catalog>,
    bodies: &Arc<Bodies>,
    mut runner: TestRunner,
    budget: Duration,
) -> Tally {
    let mut tally = Tally::new("http");
    let strategy = http_case(c, bodies);
    let token: Arc<str> = centre.duty_token.as_str().into();
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<&'static str, String>> = JoinSet::new();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        while in_flight.len() >= HTTP_IN_FLIGHT {
            settle_labelled(&mut in_flight, &mut tally).await;
        }
        tally.cases += 1;
        in_flight.spawn(http_one(centre.http, token.clone(), tree.current()));
    }
    while !in_flight.is_empty() {
        settle_labelled(&mut in_flight, &mut tally).await;
    }
    tally
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn paths_are_filled_and_answers_judged() {
        assert_eq!(
            fill("/api/v1/incidents/{id}/verify", &["abc".into()]),
            "/api/v1/incidents/abc/verify"
        );
        assert_eq!(
            fill("/api/v1/areas/{area}/level", &[String::new()]),
            "/api/v1/areas/-/level"
        );
        assert_eq!(pct("a b/é".as_bytes()), "a%20b%2F%C3%A9");
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\n\r\n{}"), Ok("2xx"));
        assert_eq!(
            judge(b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":{\"code\":\"x\",\"message\":\"y\"}}"),
            Ok("4xx")
        );
        assert!(judge(b"HTTP/1.1 400 Bad Request\r\n\r\nplain text").is_err());
        assert!(judge(b"HTTP/1.1 500 Internal\r\n\r\n{}").is_err());
        assert_eq!(labelled(Drawn::Valid, "4xx"), Ok("schema-valid 4xx"));
        assert_eq!(
            labelled(Drawn::Invalid(Fault::WrongType), "4xx"),
            Ok("schema-invalid 4xx")
        );
        assert!(labelled(Drawn::Invalid(Fault::MissingField), "2xx").is_err());
    }
}
