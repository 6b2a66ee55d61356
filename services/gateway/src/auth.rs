//! Who is asking, and what they may do: users, tokens, and the one authorization policy.
//!
//! # What it owns
//! - **Users** in `<data-dir>/users.json` (mode 0600): username, role, optional country scope
//!   (field officers) or agency (focal points), an argon2id password hash, and a generation
//!   that every change of the record raises. The file is re-read whenever it changes (checked
//!   on every login and every token check), so `vigil user add` in another process takes
//!   effect at once on every gateway sharing the data directory.
//! - **The signing key** in `<data-dir>/secrets/token.key` (32 random bytes, mode 0600),
//!   generated at first start, never in the repository.
//! - **Tokens**: HS256 JWTs. Sessions from `POST /api/v1/auth/login` last [`SESSION_TTL`];
//!   API tokens (`vigil token create`, for wall screens and agency systems) last until they
//!   expire or their id is listed in `<data-dir>/revoked-tokens` (`vigil token revoke`).
//! - **The policy**: [`Access`] says who may use a route; [`board_view`] says which redacted
//!   view of a board a role gets, [`board_scope`] which country cut. Every route and the WebSocket consult these, nothing else.
//!
//! # Promises
//! - A token is accepted only if its signature, expiry and revocation check pass; a failed
//!   check is a 401 with no detail beyond "log in again". Passwords are never stored or logged.
//! - A user added or changed while the centre runs logs in with the new password and role at
//!   once, and the old password fails (`sessions::a_password_change_ends_old_sessions_and_the_old_password`).
//! - A session is bound to the user record it was issued from: once the user's role, scope,
//!   agency or password changes, tokens issued before are refused
//!   (`sessions::a_demotion_ends_old_sessions_at_once`).
//! - The `Authorization` scheme is matched case-insensitively, as RFC 7235 says
//!   (`sessions::the_bearer_scheme_is_case_insensitive`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use boards::View;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long a login session lasts: one shift.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The roles of docs/SECURITY.md (defined with the command vocabulary, so services check the same).
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
/// Field officers and agency focal points see the public-safe view; a field officer's is
/// also cut to its country ([`board_scope`]).
pub fn board_view(role: Role, asked: Option<View>) -> View {
    match role {
        Role::DutyOfficer | Role::CrisisManager | Role::Admin => asked.unwrap_or(View::Duty),
        Role::WallScreen | Role::FieldOfficer | Role::AgencyFocalPoint => View::WallScreen,
    }
}

/// The cut of the board a caller gets, done by the projection (`boards::scope`): a field
/// officer's is its own country (other countries only in the centre-wide counters; an
/// officer without a country sees no country); a focal point's has no broadcast list (it
/// reads its agency's broadcasts through the API); `None` (no cut) for every other role.
pub fn board_scope(claims: &Claims) -> Option<boards::Cut> {
    match claims.role {
        Role::FieldOfficer => Some(boards::Cut::Country(claims.actor().scope)),
        Role::AgencyFocalPoint => Some(boards::Cut::Agency),
        _ => None,
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
    /// For a login session: the generation of the user record it was issued from. Once the
    /// record changes (role, scope, agency, password) the session is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#gen: Option<u64>,
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

/// Why a token is refused, in more detail than a client is told over HTTP: an open
/// WebSocket hears whether it should ask for a new token because its own ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Bad signature, malformed, wrong algorithm.
    Malformed,
    /// Past its expiry.
    Expired,
    /// Revoked (`vigil token revoke`), or its user's record changed since it was issued, or
    /// the users file cannot be read.
    Revoked,
}

impl Refusal {
    /// The code an open WebSocket is told before it is closed.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Malformed => "invalid_token",
            Refusal::Expired => "token_expired",
            Refusal::Revoked => "token_revoked",
        }
    }
}

/// The token of an `Authorization` header value: the scheme `Bearer` in any case (RFC 7235
/// says auth schemes are case-insensitive), one or more spaces, then the token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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

/// Runs `change` while holding an exclusive lock on `<path>.lock`, so that two operator
/// commands changing the same file (two `vigil user add` at once, a revoke during an add)
/// each read what the other wrote instead of overwriting it. The lock is released when the
/// process ends, even by kill -9, since it is the kernel's.
fn with_file_locked<T>(
    path: &Path,
    change: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Some(dir) = path.parent() {
        runtime::data_dir::create_private_dir(dir)?;
    }
    let lock_path = path.with_extension("lock");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let lock = opts
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", lock_path.display()))?;
    let result = change();
    drop(lock);
    result
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

/// A user as stored: the record and its generation, which [`Users::put`] raises on every
/// change so sessions issued from the old record end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredUser {
    username: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agency: Option<String>,
    password_hash: String,
    /// Absent (0) in files written before generations existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StoredUser {
    fn user(&self) -> User {
        User {
            username: self.username.clone(),
            role: self.role,
            scope: self.scope.clone(),
            agency: self.agency.clone(),
            password_hash: self.password_hash.clone(),
        }
    }

    /// Whether a session's claims still describe this record.
    fn issued(&self, claims: &Claims) -> bool {
        claims.r#gen.unwrap_or(0) == self.generation
            && claims.role == self.role
            && claims.scope == self.scope
            && claims.agency == self.agency
    }
}

/// The users file.
#[derive(Clone)]
pub struct Users {
    path: PathBuf,
    users: Vec<StoredUser>,
}

impl Users {
    /// Loads `<data-dir>/users.json` (empty when absent).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        Self::load_file(data_dir.join("users.json"))
    }

    fn load_file(path: PathBuf) -> anyhow::Result<Self> {
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

    /// Adds or replaces a user and saves the file. Replacing raises the user's generation,
    /// which ends every session issued from the old record (role or password changed).
    /// The file is read again under its lock first, so a user another command saved since
    /// [`Users::load`] is kept.
    pub fn put(&mut self, user: User) -> anyhow::Result<()> {
        let path = self.path.clone();
        with_file_locked(&path, || {
            self.users = Self::load_file(path.clone())?.users;
            self.put_loaded(user)
        })
    }

    fn put_loaded(&mut self, user: User) -> anyhow::Result<()> {
        let generation = self
            .users
            .iter()
            .find(|u| u.username == user.username)
            .map_or(0, |old| old.generation + 1);
        self.users.retain(|u| u.username != user.username);
        self.users.push(StoredUser {
            username: user.username,
            role: user.role,
            scope: user.scope,
            agency: user.agency,
            password_hash: user.password_hash,
            generation,
        });
        write_private(&self.path, &serde_json::to_vec_pretty(&self.users)?)
    }

    /// The user with this name and password, if both match. Takes the same time whether or
    /// not the user exists, so the answer does not reveal which usernames exist.
    pub fn check(&self, username: &str, password: &str) -> Option<User> {
        self.check_stored(username, password).map(|(u, _)| u)
    }

    /// [`Users::check`], with the record's generation.
    fn check_stored(&self, username: &str, password: &str) -> Option<(User, u64)> {
        match self.users.iter().find(|u| u.username == username) {
            Some(u) => {
                let user = u.user();
                password_matches(&user, password).then_some((user, u.generation))
            }
            None => {
                let _ = hash_password(password);
                None
            }
        }
    }

    /// Whether a session token still describes its user's record. A session that names no
    /// user is accepted only if it was not issued by a login (no generation: tokens minted
    /// with the signing key for a subject that is not a user).
    fn session_current(&self, claims: &Claims) -> bool {
        match self.users.iter().find(|u| u.username == claims.sub) {
            Some(u) => u.issued(claims),
            None => claims.r#gen.is_none(),
        }
    }
}

/// What identifies a version of a file without reading it: another process replaces the
/// users file by renaming a new one over it, so the inode changes with every write, and the
/// size and times too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

impl FileStamp {
    /// `None` when the file does not exist (or cannot be examined).
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
        };
        Some(Self {
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            inode,
        })
    }
}

/// The users as last read, and the version of the file they were read from.
struct UsersCache {
    stamp: Option<FileStamp>,
    /// `Err` when the file could not be read or parsed: then no login or session is accepted
    /// until it is fixed (the current roles are unknown; API tokens are unaffected).
    users: Result<Users, String>,
}

/// Everything the gateway needs to authenticate and authorize.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    users_path: PathBuf,
    /// Re-read when the file's stamp changes (checked on every login and token check, a
    /// `stat`), so users changed by another process take effect at once. A std Mutex: held
    /// only for the stat and, rarely, a read of a small file; never across an await.
    users: Mutex<UsersCache>,
    revoked_path: PathBuf,
    /// Revoked token ids and the stamp of the file they were read from; re-read when the
    /// file changes, so `vigil token revoke` takes effect without a restart.
    revoked: Mutex<(Option<FileStamp>, HashSet<String>)>,
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
        let users_path = data_dir.join("users.json");
        let stamp = FileStamp::of(&users_path);
        let users = Users::load_file(users_path.clone())?;
        Ok(Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            users_path,
            users: Mutex::new(UsersCache {
                stamp,
                users: Ok(users),
            }),
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
            r#gen: None,
        };
        self.sign(claims)
    }

    fn sign(&self, claims: Claims) -> anyhow::Result<(String, Claims)> {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("cannot sign the token: {e}"))?;
        Ok((token, claims))
    }

    /// Checks a token: signature, expiry, revocation, and for a login session that its user's
    /// record has not changed since.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.check(token).map_err(|_| AuthError::Invalid)
    }

    /// [`Auth::verify`], saying why a token is refused.
    pub fn check(&self, token: &str) -> Result<Claims, Refusal> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::Expired,
                _ => Refusal::Malformed,
            },
        )?;
        if self.is_revoked(&data.claims.jti) {
            return Err(Refusal::Revoked);
        }
        if data.claims.kind == "session"
            && !self.with_users(|users| users.is_some_and(|u| u.session_current(&data.claims)))
        {
            return Err(Refusal::Revoked);
        }
        Ok(data.claims)
    }

    /// Runs `f` on the current users, re-reading the file first if it changed since it was
    /// last read; `None` when it cannot be read.
    fn with_users<T>(&self, f: impl FnOnce(Option<&Users>) -> T) -> T {
        let stamp = FileStamp::of(&self.users_path);
        let mut cache = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if cache.stamp != stamp {
            // Stamp first, then read: a write in between is seen again at the next check.
            cache.users = Users::load_file(self.users_path.clone()).map_err(|e| e.to_string());
            cache.stamp = stamp;
            match &cache.users {
                Ok(u) => tracing::info!(users = u.users.len(), "users file re-read"),
                Err(e) => tracing::error!(
                    error = %e,
                    "the users file cannot be read: no login or session is accepted until it is fixed"
                ),
            }
        }
        f(cache.users.as_ref().ok())
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let stamp = FileStamp::of(&self.revoked_path);
        let mut cache = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != stamp {
            let text = std::fs::read_to_string(&self.revoked_path).unwrap_or_default();
            cache.1 = text
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            cache.0 = stamp;
        }
        cache.1.contains(jti)
    }

    /// Logs a user in: a session token bound to the user's record as it is now, or `None`
    /// for a wrong username or password.
    pub fn login(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Option<(String, Claims)>> {
        // The file is re-read if it changed, but argon2 runs outside the lock.
        let Some(users) = self.with_users(|users| users.cloned()) else {
            anyhow::bail!("the users file cannot be read");
        };
        match users.check_stored(username, password) {
            Some((u, generation)) => {
                let iat = now_secs();
                self.sign(Claims {
                    sub: u.username,
                    role: u.role,
                    scope: u.scope,
                    agency: u.agency,
                    exp: iat + SESSION_TTL.as_secs(),
                    iat,
                    jti: uuid::Uuid::new_v4().to_string(),
                    kind: "session".to_owned(),
                    r#gen: Some(generation),
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Adds a token id to the revocation list.
pub fn revoke(data_dir: &Path, jti: &str) -> anyhow::Result<()> {
    let path = data_dir.join("revoked-tokens");
    with_file_locked(&path, || {
        // A file that exists but cannot be read must stop the revoke: writing anyway would
        // drop every revocation already in it.
        let mut text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!(
                "cannot read {} ({e}); nothing was revoked. Fix its permissions and run the revoke again",
                path.display()
            ),
        };
        text.push_str(jti.trim());
        text.push('\n');
        write_private(&path, text.as_bytes())
    })
}

#[cfg(test)]
mod tests;
