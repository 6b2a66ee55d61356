//! What `vigil up` prints must work when pasted: started on a NATS port of its own
//! (`--nats-url`, not the default) and a data directory of its own, every `vigil …` command
//! line in its banner is run exactly as printed (only `vigil` replaced by the binary's path,
//! from the repository root like an operator's shell) and must succeed. The tools find the
//! centre's bus through `<data-dir>/nats-url`, which `vigil up` writes owner-only and removes
//! at a clean stop.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

mod common;

use testkit::free_port;

/// Every command line the banner prints: in backquotes, after `Reference data …:`, and the
/// `Try:` pair.
fn printed_commands(banner: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in banner.lines() {
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 && part.starts_with("vigil ") {
                found.push(part.to_owned());
            }
        }
        if line.starts_with("Reference data")
            && let Some((_, cmd)) = line.split_once(": ")
        {
            found.push(cmd.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Try: ") {
            found.extend(rest.split("   and   ").map(|c| c.trim().to_owned()));
        }
    }
    found
}

/// The repository root: where an operator runs the printed commands (the import names a
/// file under `ops/`).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `command` as printed, through a shell (it holds quotes), with `vigil` at the start
/// replaced by the binary; no NATS settings in the environment.
fn shell(command: &str) -> tokio::process::Command {
    let rest = command.strip_prefix("vigil ").expect("a vigil command");
    // exec: the shell becomes vigil, so stopping the follower stops vigil itself.
    let line = format!("exec '{}' {rest}", env!("CARGO_BIN_EXE_vigil"));
    let mut c = tokio::process::Command::new("sh");
    c.args(["-c", &line])
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .env_remove("VIGIL_NATS_URL")
        .env_remove("VIGIL_NATS_USER")
        .env_remove("VIGIL_NATS_PASSWORD")
        .env_remove("VIGIL_DATA_DIR")
        .env_remove("VIGIL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_vigil_up_prints_works_as_printed_on_a_non_default_nats_port() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (mut child, banner) = common::spawn_up(
        &data_dir,
        &nats_url,
        free_port(),
        free_port(),
        Stdio::null(),
    )
    .await;

    // The record the tools read: this centre's URL, owner-only.
    let record = data_dir.join("nats-url");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        nats_url,
        "{banner}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&record).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the record is owner-only");
    }

    let commands = printed_commands(&banner);
    let verbs: Vec<&str> = commands
        .iter()
        .map(|c| {
            c.split_whitespace()
                .find(|w| !w.starts_with('-') && *w != "vigil" && !w.contains('/'))
                .unwrap_or("")
        })
        .collect();
    for verb in ["token", "user", "import", "append", "tail"] {
        assert!(verbs.contains(&verb), "{verb} not printed: {banner}");
    }
    for command in &commands {
        assert!(
            command.contains("--data-dir"),
            "a command without the data directory runs against ./data: {command}"
        );
        if command.contains(" user add ") {
            // Prompts for a password on the terminal: interactive, not run here (it reaches
            // no bus; the --data-dir is what it needs, checked above).
            continue;
        }
        if command.contains(" tail ") {
            // Follows until Ctrl-C: it must print the log (the note appended above) and
            // keep running.
            let mut tail = shell(command).spawn().unwrap();
            let mut out = tail.stdout.take().unwrap();
            let seen = tokio::time::timeout(Duration::from_secs(20), async {
                use tokio::io::AsyncReadExt;
                let mut text = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = out.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return String::from_utf8_lossy(&text).into_owned();
                    }
                    text.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&text).contains("NoteAdded") {
                        return String::from_utf8_lossy(&text).into_owned();
                    }
                }
            })
            .await;
            let still_running = tail.try_wait().unwrap().is_none();
            let _ = tail.start_kill();
            let stderr = {
                let _ = tail.wait().await;
                let mut e = String::new();
                use tokio::io::AsyncReadExt;
                if let Some(mut s) = tail.stderr.take() {
                    let _ = s.read_to_string(&mut e).await;
                }
                e
            };
            let seen = seen.unwrap_or_default();
            assert!(
                seen.contains("NoteAdded") && still_running,
                "{command} as printed: stdout {seen:?}, stderr {stderr}"
            );
            continue;
        }
        let out = tokio::time::timeout(Duration::from_secs(60), shell(command).output())
            .await
            .expect("the printed command finishes")
            .unwrap();
        assert!(
            out.status.success(),
            "{command} as printed failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A clean stop removes the record: nothing dials a bus that is gone.
    common::stop_up(&mut child);
    assert!(child.try_wait().unwrap().is_some_and(|s| s.success()));
    assert!(
        !record.exists(),
        "the NATS URL record is removed at a clean stop"
    );
}
