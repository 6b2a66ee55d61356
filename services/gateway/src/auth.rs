//! Who is asking, and what they may do: users, tokens, and the one authorization policy.
//!
//! # What it owns
//! - **Users** in `<data-dir>/users.json` (mode 0600): username, role, optional country scope
//!   (field officers) or agency (focal points), and an argon2id password hash.
//! - **The signing key** in `<data-dir>/secrets/token.key` (32 random bytes, mode 0600),
//!   generated at first start, never in the repository.
//! - **Tokens**: HS256 JWTs. Sessions from `POST /api/v1/auth/login` last [`SESSION_TTL`];
//!   API tokens (`vigil token create`, for wall screens and agency systems) last until they
//!   expire or their id is listed in `<data-dir>/revoked-tokens` (`vigil token revoke`).
//! - **The policy**: [`Access`] says who may use a route; [`board_view`] says which redacted
//!   view of a board a role gets. Every route and the WebSocket consult these, nothing else.
//!
//! # Promises
//! A token is accepted only if its signature, expiry and revocation check pass; a failed
//! check is a 401 with no detail beyond "log in again". Passwords are never stored or logged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use boards::View;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long a login session lasts: one shift.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The roles of DESIGN.md (defined with the command vocabulary, so services check the same).
pub use events::command::Role;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (pages, health, login).
    Public,
    /// Any valid token.
    AnyRole,
    /// Only these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether `role` passes.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Access::Public | Access::AnyRole => true,
            Access::Roles(roles) => roles.contains(&role),
        }
    }
}

/// The board view a role gets: redaction is decided here and done by the projection.
/// Field officers and agency focal points see the public-safe view until they get views of
/// their own.
pub fn board_view(role: Role, asked: Option<View>) -> View {
    match role {
        Role::DutyOfficer | Role::CrisisManager | Role::Admin => asked.unwrap_or(View::Duty),
        Role::WallScreen | Role::FieldOfficer | Role::AgencyFocalPoint => View::WallScreen,
    }
}

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Username, or the API token's label.
    pub sub: String,
    /// Role.
    pub role: Role,
    /// Country (ISO alpha-2) a field officer is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Agency of a focal point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Token id, for revocation.
    pub jti: String,
    /// `session` or `api`.
    pub kind: String,
}

impl Claims {
    /// The actor a command carries: who, in which role, limited to which country, speaking
    /// for which agency.
    pub fn actor(&self) -> events::command::Actor {
        events::command::Actor {
            user: self.sub.clone(),
            role: self.role,
            scope: self
                .scope
                .as_deref()
                .and_then(|s| events::validate::Country::parse(s).ok()),
            agency: self.agency.clone(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is needed.
    #[error("a token is required: log in at /api/v1/auth/login or use an API token")]
    Missing,
    /// Bad signature, malformed, expired or revoked.
    #[error("the token is not valid (expired, revoked or malformed): log in again")]
    Invalid,
    /// Valid token, but the role may not do this.
    #[error("your role may not do this")]
    Forbidden,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A user record in `users.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Country scope (field officers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Agency (focal points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// Writes `bytes` to `path` atomically with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        runtime::data_dir::create_private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

fn password_matches(user: &User, password: &str) -> bool {
    match PasswordHash::new(&user.password_hash) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// The users file.
pub struct Users {
    path: PathBuf,
    users: Vec<User>,
}

impl Users {
    /// Loads `<data-dir>/users.json` (empty when absent).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("users.json");
        let users = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not a valid users file: {e}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        Ok(Self { path, users })
    }

    /// Whether there are no users yet (first start).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds or replaces a user and saves the file.
    pub fn put(&mut self, user: User) -> anyhow::Result<()> {
        self.users.retain(|u| u.username != user.username);
        self.users.push(user);
        write_private(&self.path, &serde_json::to_vec_pretty(&self.users)?)
    }

    /// The user with this name and password, if both match. Takes the same time whether or
    /// not the user exists, so the answer does not reveal which usernames exist.
    pub fn check(&self, username: &str, password: &str) -> Option<User> {
        match self.users.iter().find(|u| u.username == username) {
            Some(u) if password_matches(u, password) => Some(u.clone()),
            Some(_) => None,
            None => {
                let _ = hash_password(password);
                None
            }
        }
    }
}

/// Everything the gateway needs to authenticate and authorize.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    users: RwLock<Users>,
    revoked_path: PathBuf,
    /// Revoked token ids and the file's modification time they were read at; re-read when
    /// the file changes, so `vigil token revoke` takes effect without a restart.
    revoked: Mutex<(Option<SystemTime>, HashSet<String>)>,
    /// Extra origins allowed to open the WebSocket (a gateway always allows its own).
    pub allowed_origins: Vec<String>,
}

impl Auth {
    /// Loads (or, at first start, creates) the signing key and loads the users.
    pub fn open(data_dir: &Path, allowed_origins: Vec<String>) -> anyhow::Result<Self> {
        let key_path = data_dir.join("secrets").join("token.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() >= 32 => k,
            Ok(_) => anyhow::bail!(
                "{} is damaged (too short); delete it to make a new one (every token will have to be issued again)",
                key_path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k)
                    .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
                write_private(&key_path, &k)?;
                k
            }
            Err(e) => anyhow::bail!("cannot read {}: {e}", key_path.display()),
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            users: RwLock::new(Users::load(data_dir)?),
            revoked_path: data_dir.join("revoked-tokens"),
            revoked: Mutex::new((None, HashSet::new())),
            allowed_origins,
        })
    }

    /// Issues a token for `sub` valid for `ttl`.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        scope: Option<String>,
        agency: Option<String>,
        ttl: Duration,
        kind: &str,
    ) -> anyhow::Result<(String, Claims)> {
        let iat = now_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            scope,
            agency,
            exp: iat + ttl.as_secs(),
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            kind: kind.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("cannot sign the token: {e}"))?;
        Ok((token, claims))
    }

    /// Checks a token: signature, expiry, revocation.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::Invalid)?;
        if self.is_revoked(&data.claims.jti) {
            return Err(AuthError::Invalid);
        }
        Ok(data.claims)
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let mtime = std::fs::metadata(&self.revoked_path)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != mtime {
            let text = std::fs::read_to_string(&self.revoked_path).unwrap_or_default();
            cache.1 = text
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            cache.0 = mtime;
        }
        cache.1.contains(jti)
    }

    /// Logs a user in: a session token, or `None` for a wrong username or password.
    pub fn login(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Option<(String, Claims)>> {
        let user = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check(username, password);
        match user {
            Some(u) => Ok(Some(self.issue(
                &u.username,
                u.role,
                u.scope,
                u.agency,
                SESSION_TTL,
                "session",
            )?)),
            None => Ok(None),
        }
    }
}

/// Adds a token id to the revocation list.
pub fn revoke(data_dir: &Path, jti: &str) -> anyhow::Result<()> {
    let path = data_dir.join("revoked-tokens");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(jti.trim());
    text.push('\n');
    write_private(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_expire_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path(), vec![]).unwrap();
        let (token, claims) = auth
            .issue(
                "screen-1",
                Role::WallScreen,
                None,
                None,
                Duration::from_secs(60),
                "api",
            )
            .unwrap();
        assert_eq!(auth.verify(&token).unwrap(), claims);
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
        // Another key (another centre) does not accept it.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            Auth::open(other.path(), vec![]).unwrap().verify(&token),
            Err(AuthError::Invalid)
        );
        // Expired.
        let (old, _) = auth
            .issue("x", Role::Admin, None, None, Duration::ZERO, "session")
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(auth.verify(&old), Err(AuthError::Invalid));
        // Revoked, without a restart.
        revoke(dir.path(), &claims.jti).unwrap();
        assert_eq!(auth.verify(&token), Err(AuthError::Invalid));
        // The key survives a reopen.
        let (t2, _) = auth
            .issue("y", Role::Admin, None, None, Duration::from_secs(60), "api")
            .unwrap();
        assert!(Auth::open(dir.path(), vec![]).unwrap().verify(&t2).is_ok());
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut users = Users::load(dir.path()).unwrap();
        assert!(users.is_empty());
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        users
            .put(User {
                username: "ana".into(),
                role: Role::DutyOfficer,
                scope: None,
                agency: None,
                password_hash: hash,
            })
            .unwrap();
        let users = Users::load(dir.path()).unwrap();
        assert!(users.check("ana", "correct horse").is_some());
        assert!(users.check("ana", "wrong").is_none());
        assert!(users.check("nobody", "correct horse").is_none());
        let text = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
        assert!(!text.contains("correct horse"));
    }

    #[test]
    fn views_follow_roles() {
        assert_eq!(
            board_view(Role::WallScreen, Some(View::Duty)),
            View::WallScreen
        );
        assert_eq!(board_view(Role::FieldOfficer, None), View::WallScreen);
        assert_eq!(board_view(Role::DutyOfficer, None), View::Duty);
        assert_eq!(
            board_view(Role::Admin, Some(View::WallScreen)),
            View::WallScreen
        );
    }
}
