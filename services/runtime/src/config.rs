//! Settings: flags and environment first, then an optional TOML file, then defaults that
//! need no configuration at all.
//!
//! The file holds the same names as the flags (`data_dir`, `nats_url`, `http`, ...) plus the
//! store's limits; unknown keys are refused so a typo is an error, not a silent default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Port of the nats-server that `vigil up` starts: its own, not 4222, so it never meets a
/// system NATS server.
pub const DEFAULT_NATS_PORT: u16 = 4290;
/// The gateway's default address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// The default `/metrics` address of `vigil up`.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9490";

/// The optional configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where all data lives.
    pub data_dir: Option<PathBuf>,
    /// NATS server URL.
    pub nats_url: Option<String>,
    /// Gateway HTTP address.
    pub http: Option<String>,
    /// Prometheus `/metrics` address.
    pub metrics: Option<String>,
    /// Store settings.
    #[serde(default)]
    pub store: StoreFileConfig,
    /// The gateway's connection limits.
    #[serde(default)]
    pub gateway: GatewayFileConfig,
}

/// The gateway's connection limits in the file (the environment's `VIGIL_HTTP_*` and
/// `VIGIL_MAX_*` variables win over these; see the gateway's `ConnLimits`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayFileConfig {
    /// Seconds a new connection has to send its first whole request head.
    pub header_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for (and read) its next request head.
    pub keepalive_secs: Option<u64>,
    /// Connections open at once, WebSockets included.
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address.
    pub max_connections_per_address: Option<usize>,
    /// WebSockets open at once from one client address.
    pub max_ws_per_address: Option<usize>,
    /// WebSockets open at once with one token.
    pub max_ws_per_token: Option<usize>,
    /// Seconds a WebSocket frame may wait for a client that stopped reading before it is dropped.
    pub ws_send_timeout_secs: Option<u64>,
    /// The kernel's send buffer of each connection, in bytes (`SO_SNDBUF`).
    pub send_buffer_bytes: Option<u64>,
    /// Seconds an ended broadcast stays on the live board (0 or more).
    pub board_retention_secs: Option<u64>,
}

/// Store settings in the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreFileConfig {
    /// Largest event in bytes.
    pub max_event_bytes: Option<usize>,
    /// Largest append request in bytes.
    pub max_append_bytes: Option<usize>,
    /// Most events per append.
    pub max_events_per_append: Option<usize>,
    /// Most events per group commit.
    pub max_group_events: Option<usize>,
    /// A replica's leader: most groups in one journal round trip.
    pub journal_batch_groups: Option<usize>,
}

/// Loads the file at `path`, or the defaults when there is none.
pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the config file {} is not valid: {e}", path.display()))
}

/// The file under the data directory where a running `vigil up` records the NATS URL its
/// clients use (owner-only, like everything there; removed at a clean stop). The operator
/// tools read it when no URL is given, so a centre started on another port is found.
pub const NATS_URL_FILE: &str = "nats-url";

/// Largest `nats-url` record read.
const MAX_NATS_URL_BYTES: u64 = 4096;

/// Where `vigil up` records its NATS URL in `data_dir`.
pub fn nats_url_file(data_dir: &Path) -> PathBuf {
    data_dir.join(NATS_URL_FILE)
}

/// The NATS URL recorded in `data_dir` by the `vigil up` that owns it, if any (a missing,
/// unreadable, oversized or blank record counts as none: the default applies).
pub fn recorded_nats_url(data_dir: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(nats_url_file(data_dir)).ok()?;
    let mut text = String::new();
    file.take(MAX_NATS_URL_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    let url = text.lines().next()?.trim();
    (!url.is_empty()).then(|| url.to_owned())
}

/// The default data directory: `./data` beside where Vigil is started.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_optional_and_strict() {
        assert_eq!(load(None).unwrap(), FileConfig::default());
        // Removed when the test ends (a fixed path under /tmp was left behind by every run).
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "nats_url = \"nats://127.0.0.1:1\"\n[store]\nmax_event_bytes = 100\n[gateway]\nmax_ws_per_token = 4\n",
        )
        .unwrap();
        let cfg = load(Some(&good)).unwrap();
        assert_eq!(cfg.nats_url.as_deref(), Some("nats://127.0.0.1:1"));
        assert_eq!(cfg.store.max_event_bytes, Some(100));
        assert_eq!(cfg.gateway.max_ws_per_token, Some(4));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "nats_ur = \"x\"\n").unwrap();
        let err = load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("nats_ur"), "{err}");
        assert!(load(Some(&dir.join("missing.toml"))).is_err());
    }

    #[test]
    fn the_recorded_nats_url_is_read_back_and_a_missing_or_blank_one_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(recorded_nats_url(tmp.path()), None);
        std::fs::write(nats_url_file(tmp.path()), "nats://127.0.0.1:4391\n").unwrap();
        assert_eq!(
            recorded_nats_url(tmp.path()).as_deref(),
            Some("nats://127.0.0.1:4391")
        );
        std::fs::write(nats_url_file(tmp.path()), "  \n").unwrap();
        assert_eq!(recorded_nats_url(tmp.path()), None);
    }
}
