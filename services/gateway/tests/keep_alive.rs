//! A connection survives an answer given before its body was read (issue 14, item 2): a 401
//! from the access check or a 413 over the body limit, on a body sent in part, whole, or far
//! over the limit. Either the next request on the same socket is answered, or the answer
//! said `Connection: close`; a client is never left to find a dead connection.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Center;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one whole answer (head and `Content-Length` body) from `s`: status, head, body.
async fn answer(s: &mut TcpStream) -> (u16, String, Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .expect("the answer, not a reset");
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while got.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .unwrap()
            .expect("the whole body, not a reset");
        assert!(n > 0, "closed before the whole body");
        got.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&got[head_end..head_end + len]).unwrap_or(Value::Null);
    (status, head, body)
}

/// After an answer, the socket either said it closes or answers the next request.
async fn next_request_or_close(s: &mut TcpStream, head: &str, center: &Center) {
    if head.contains("connection: close") {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        return;
    }
    s.write_all(format!("GET /readyz HTTP/1.1\r\nHost: {}\r\n\r\n", center.addr).as_bytes())
        .await
        .unwrap();
    let (status, _, _) = answer(s).await;
    assert_eq!(
        status, 200,
        "the next request on a kept connection is answered"
    );
}

fn post_head(center: &Center, path: &str, token: Option<&str>, len: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {len}\r\n\r\n",
        center.addr
    )
}

#[tokio::test]
async fn a_refusal_before_the_body_keeps_the_connection_or_says_close() {
    let center = Center::start().await;
    // 1. No token, headers and a part of the body, then the client waits for the answer.
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    s.write_all(post_head(&center, "/api/v1/incidents", None, 1000).as_bytes())
        .await
        .unwrap();
    s.write_all(&[b' '; 300]).await.unwrap();
    let (status, head, body) = answer(&mut s).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    next_request_or_close(&mut s, &head, &center).await;

    // 2. No token, the whole body at once: drained, and the connection carries on.
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let mut req = post_head(&center, "/api/v1/incidents", None, 20_000).into_bytes();
    req.extend(std::iter::repeat_n(b' ', 20_000));
    s.write_all(&req).await.unwrap();
    let (status, head, _) = answer(&mut s).await;
    assert_eq!(status, 401);
    assert!(
        !head.contains("connection: close"),
        "a whole small body is drained: {head}"
    );
    next_request_or_close(&mut s, &head, &center).await;

    // 3. A 3 MB body, over the limit: a whole 413 JSON answer, then the next request.
    let token = center.duty_token.clone();
    let big = 3 * 1024 * 1024;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let head = post_head(&center, "/api/v1/incidents", Some(&token), big);
    let (mut rd, mut wr) = s.split();
    let send = async {
        wr.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..big / chunk.len() {
            wr.write_all(&chunk).await.unwrap();
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.expect("no reset before the 413");
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let (_, first) = tokio::join!(send, read);
    // The answer was read while sending; put what was read in front of the rest.
    let text = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(
        !text.contains("connection: close"),
        "3 MB is drained: {text}"
    );
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    let mut body = first[body_start..].to_vec();
    while body.len() < len {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&buf[..n]);
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    next_request_or_close(&mut s, "", &center).await;

    // 4. More than the drain bound: the answer says it closes.
    let huge = vigil_gateway::server::DRAIN_MAX_BYTES + 2 * 1024 * 1024;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let head = post_head(&center, "/api/v1/incidents", None, huge);
    let (mut rd, mut wr) = s.split();
    let send = async {
        wr.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..huge / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    };
    let (_, got) = tokio::join!(send, read);
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    if !text.is_empty() {
        assert!(text.starts_with("http/1.1 401"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
    }

    // 5. A slow body that stalls: answered, saying it closes, and closed.
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    s.write_all(post_head(&center, "/api/v1/incidents", None, 5000).as_bytes())
        .await
        .unwrap();
    s.write_all(&[b' '; 10]).await.unwrap();
    let (status, head, _) = answer(&mut s).await;
    assert_eq!(status, 401);
    assert!(head.contains("connection: close"), "a stalled body: {head}");
    next_request_or_close(&mut s, &head, &center).await;
}

#[tokio::test]
async fn a_keep_alive_client_gets_every_answer_after_refusals() {
    let center = Center::start().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://{}/api/v1/incidents", center.addr);
    let small = vec![b' '; 40_000];
    let big = vec![b' '; 3 * 1024 * 1024];
    for round in 0..30 {
        let (token, body, want) = match round % 3 {
            0 => (None, small.clone(), 401),
            1 => (Some(center.duty_token.as_str()), big.clone(), 413),
            _ => (Some(center.screen_token.as_str()), small.clone(), 403),
        };
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(resp.status().as_u16(), want, "round {round}");
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(v["error"]["code"].is_string(), "round {round}: {v}");
        let ready = client
            .get(format!("http://{}/readyz", center.addr))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}, the next request: {e:?}"));
        assert_eq!(ready.status().as_u16(), 200);
    }
}
