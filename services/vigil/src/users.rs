//! `vigil user` and `vigil token`: managing who may use the centre. They work on the same
//! `--data-dir` as the running centre: every gateway on that directory sees a user added or
//! changed, and a token revoked, at once, without a restart (it re-reads the files when they
//! change); a changed user's existing sessions end.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use gateway::auth::{Auth, Role, User, Users, hash_password};

use crate::cli::{Resolved, TokenCommand, UserCommand};

fn parse_role(s: &str) -> anyhow::Result<Role> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        anyhow::anyhow!("unknown role {s:?}; roles: {}", all.join(", "))
    })
}

fn check_scope(role: Role, scope: &Option<String>, agency: &Option<String>) -> anyhow::Result<()> {
    if let Some(c) = scope {
        events::validate::Country::parse(c).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    }
    match role {
        Role::FieldOfficer if scope.is_none() => {
            anyhow::bail!("a field officer needs --scope <country>, e.g. --scope SO")
        }
        Role::AgencyFocalPoint if agency.is_none() => {
            anyhow::bail!("an agency focal point needs --agency <id>")
        }
        _ => Ok(()),
    }
}

/// `vigil user …`.
pub fn user(settings: Resolved, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            username,
            role,
            scope,
            agency,
            password_stdin,
        } => {
            let role = parse_role(&role)?;
            check_scope(role, &scope, &agency)?;
            if username.is_empty()
                || username.len() > 64
                || username.chars().any(char::is_whitespace)
            {
                anyhow::bail!("a username is 1-64 characters without spaces");
            }
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                let p1 = rpassword::prompt_password(format!("Password for {username}: "))?;
                let p2 = rpassword::prompt_password("Again: ")?;
                if p1 != p2 {
                    anyhow::bail!("the two passwords differ; nothing was changed");
                }
                p1
            };
            if password.chars().count() < 12 {
                anyhow::bail!("use a password of at least 12 characters; nothing was changed");
            }
            let mut users = Users::load(&settings.data_dir)?;
            users.put(User {
                username: username.clone(),
                role,
                scope,
                agency,
                password_hash: hash_password(&password)?,
            })?;
            println!(
                "user {username} saved with role {} (in effect now; sessions issued before this change are ended)",
                role.as_str()
            );
            Ok(())
        }
    }
}

/// `vigil token …`.
pub fn token(settings: Resolved, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            role,
            scope,
            agency,
            days,
            label,
        } => {
            let role = parse_role(&role)?;
            check_scope(role, &scope, &agency)?;
            let auth = Auth::open(&settings.data_dir, vec![])?;
            let ttl = Duration::from_secs(days.clamp(1, 3650) * 24 * 3600);
            let (token, claims) = auth.issue(&label, role, scope, agency, ttl, "api")?;
            eprintln!(
                "token id {} (revoke with `vigil token revoke {}`), role {}, valid {} days",
                claims.jti,
                claims.jti,
                role.as_str(),
                days.clamp(1, 3650)
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            gateway::auth::revoke(&settings.data_dir, &id)?;
            println!("token {id} revoked");
            Ok(())
        }
    }
}

/// At the first start of a centre (no users yet), creates the user `admin` with a random
/// password and returns it, to be shown once.
pub fn bootstrap_admin(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let mut users = Users::load(data_dir)?;
    if !users.is_empty() {
        return Ok(None);
    }
    let mut raw = [0u8; 15];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    users.put(User {
        username: "admin".into(),
        role: Role::Admin,
        scope: None,
        agency: None,
        password_hash: hash_password(&password)?,
    })?;
    Ok(Some(password))
}
