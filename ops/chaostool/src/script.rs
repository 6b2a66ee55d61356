//! Running an ops script a scenario drives (`ops/cluster`, `ops/site`): its stdout, or an
//! error naming the script, its arguments and its stderr.

use anyhow::Context;

/// Runs `command` (the script `name` with `args`) to its end.
pub async fn output(
    command: std::process::Command,
    name: &str,
    args: &[&str],
) -> anyhow::Result<String> {
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .with_context(|| format!("running {name}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{name} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
