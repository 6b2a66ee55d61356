//! Small helpers shared by the board benchmarks: a minimal HTTP GET, process memory and
//! file limits from `/proc`, the gateway's Prometheus counters, and wall-clock time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Nanoseconds since the Unix epoch, now.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `GET url` (plain `http://host:port/path`) with `Connection: close`; returns the status and
/// the body. Enough for `/readyz` and `/metrics` on loopback, no client library needed.
pub async fn http_get(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("GET {url}: no answer within {timeout:?}"))?
        .with_context(|| format!("GET {url}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("GET {url}: not an HTTP response"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body (best effort; enough for our own servers).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(rest.get(..n.min(rest.len())).unwrap_or(""));
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(""));
        body = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

/// A `VmXxx:` line of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{path}: bad {key} line {line:?}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("{path} has no {key} line")
}

/// Resident memory of `pid` (`VmRSS`), bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    proc_status_bytes(pid, "VmRSS")
}

/// The soft limit on open files of `pid` (`self` for this process), if readable.
pub fn open_file_limit(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open file descriptors of `pid` right now, if readable.
pub fn open_files(pid: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The `vigil_gateway_*` samples of a Prometheus text page, by series (name and labels).
pub fn gateway_metrics(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| l.starts_with("vigil_gateway_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Scrapes `url` for the gateway's metrics; empty (with a note on stderr) if it fails.
pub async fn scrape(url: Option<&str>) -> BTreeMap<String, f64> {
    let Some(url) = url else {
        return BTreeMap::new();
    };
    match http_get(url, Duration::from_secs(5)).await {
        Ok((200, body)) => gateway_metrics(&body),
        Ok((status, _)) => {
            eprintln!("vigil-bench: GET {url} answered {status}");
            BTreeMap::new()
        }
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            BTreeMap::new()
        }
    }
}

/// Bytes as `12.3 KiB` / `4.5 MiB`.
pub fn bytes_text(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_are_read() {
        let page = "# HELP x\nvigil_gateway_connections 12\nvigil_gateway_resyncs_total 3\nother 1\nvigil_gateway_x{a=\"b c\"} 2.5\n";
        let m = gateway_metrics(page);
        assert_eq!(m.get("vigil_gateway_connections"), Some(&12.0));
        assert_eq!(m.get("vigil_gateway_resyncs_total"), Some(&3.0));
        assert_eq!(m.get("vigil_gateway_x{a=\"b c\"}"), Some(&2.5));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
