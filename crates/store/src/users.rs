//! Accounts: users with argon2id-hashed passwords, per-user API tokens and browser login
//! sessions.
//!
//! Secrets never rest in the database in the clear: passwords are stored as argon2id PHC strings,
//! API tokens and login session ids as their SHA-256. Password hashing and verification run
//! outside the store lock, so a login does not stall other store users.
//!
//! Each user gets a distinct unprivileged host uid, the store's [`crate::UidRange`] base
//! ([`USER_UID_BASE`] by default) plus their id. Ids are never reused, so a new user never
//! inherits a removed user's files by uid.

use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// Host uids of users start here, well above the system's and people's own accounts.
pub const USER_UID_BASE: u32 = 200_000;

/// The shortest password accepted, in characters.
pub const PASSWORD_CHARS_MIN: usize = 8;

/// The longest password accepted, in bytes; bounds the work one login attempt costs.
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// The longest user name, in characters.
const NAME_CHARS_MAX: usize = 32;

/// The longest tier name, in characters.
const TIER_CHARS_MAX: usize = 64;

/// Prefix of every API token, so a leaked one is recognisable.
const API_TOKEN_PREFIX: &str = "clt_";

/// An argon2id hash (default parameters) of a password nobody has. Verifying against it costs
/// what verifying a real user's password costs, so an unknown name answers no faster.
const DUMMY_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Y29tbW9ubGFiZHVtbXk$3Nd6XKyl0v3ewOw8yl8T5P6nDoZuzlBmupq2Zi1SO0Y";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = StoreError;

    fn from_str(value: &str) -> Result<Role, StoreError> {
        match value {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::InvalidRole(other.into())),
        }
    }
}

/// One account. The password hash stays in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub tier: String,
    /// The unprivileged host uid the user's kernels run as.
    pub uid: u32,
    pub created_at: String,
    /// RFC 3339 time the current restriction ends, if the account is restricted.
    pub restricted_until: Option<String>,
    pub restricted_reason: Option<String>,
}

impl UserRecord {
    /// Whether the account is restricted at `now` (RFC 3339).
    pub fn is_restricted_at(&self, now: &str) -> Result<bool, StoreError> {
        match &self.restricted_until {
            None => Ok(false),
            Some(until) => Ok(parse_time(until)? > parse_time(now)?),
        }
    }
}

/// An API token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub label: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

const USER_COLUMNS: &str =
    "users.id, users.name, users.role, users.tier, users.uid, users.created_at, users.restricted_until, users.restricted_reason";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let role: String = row.get(2)?;
    let role = role.parse::<Role>().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(UserRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role,
        tier: row.get(3)?,
        uid: row.get(4)?,
        created_at: row.get(5)?,
        restricted_until: row.get(6)?,
        restricted_reason: row.get(7)?,
    })
}

/// Checks a user name against `^[a-z][a-z0-9_-]{0,31}$`.
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= NAME_CHARS_MAX {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.into()))
    }
}

/// Checks a tier name: 1 to 64 ASCII letters, digits, `_` or `-`.
fn validate_tier(tier: &str) -> Result<(), StoreError> {
    let ok = !tier.is_empty()
        && tier.len() <= TIER_CHARS_MAX
        && tier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTier(tier.into()))
    }
}

fn validate_password(password: &str) -> Result<(), StoreError> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(StoreError::WeakPassword {
            min_chars: PASSWORD_CHARS_MIN,
        });
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(StoreError::PasswordTooLong {
            max_bytes: PASSWORD_BYTES_MAX,
        });
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| StoreError::PasswordHash(error.to_string()))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| StoreError::PasswordHash(error.to_string()))?;
    Ok(hash.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn parse_time(value: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, StoreError> {
    chrono::DateTime::parse_from_rfc3339(value).map_err(|_| StoreError::InvalidTime {
        value: value.into(),
    })
}

fn user_id(tx: &rusqlite::Connection, name: &str) -> Result<i64, StoreError> {
    tx.query_row(
        "SELECT id FROM users WHERE name = ?1",
        params![name],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NoSuchUser(name.into()))
}

impl Store {
    /// Creates a user. Validates the name (`^[a-z][a-z0-9_-]{0,31}$`), the password (at least
    /// [`PASSWORD_CHARS_MIN`] characters) and the tier name, hashes the password with argon2id
    /// and assigns the host uid base + id from the store's uid range; refuses when the range is
    /// used up.
    pub fn user_add(
        &self,
        name: &str,
        password: &str,
        role: Role,
        tier: &str,
        now: &str,
    ) -> Result<UserRecord, StoreError> {
        validate_user_name(name)?;
        validate_password(password)?;
        validate_tier(tier)?;
        parse_time(now)?;
        let password_hash = hash_password(password)?;
        self.with_tx(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)",
                params![name],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::UserExists(name.into()));
            }
            // The uid depends on the id, known only after the insert; 0 holds its place.
            tx.execute(
                "INSERT INTO users (name, password_hash, role, tier, uid, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![name, password_hash, role.as_str(), tier, now],
            )?;
            let id = tx.last_insert_rowid();
            let uids = self.uids;
            let uid = u32::try_from(id)
                .ok()
                .filter(|id| *id < uids.count)
                .and_then(|id| uids.base.checked_add(id))
                .ok_or(StoreError::UidRangeFull {
                    base: uids.base,
                    last: uids.last(),
                })?;
            tx.execute("UPDATE users SET uid = ?2 WHERE id = ?1", params![id, uid])?;
            Ok(UserRecord {
                id,
                name: name.into(),
                role,
                tier: tier.into(),
                uid,
                created_at: now.into(),
                restricted_until: None,
                restricted_reason: None,
            })
        })
    }

    /// The lowest and highest uid any user (removed ones excepted) has, if there is a user.
    pub fn user_uid_bounds(&self) -> Result<Option<(u32, u32)>, StoreError> {
        let bounds: (Option<u32>, Option<u32>) = self.with(|connection| {
            connection.query_row("SELECT MIN(uid), MAX(uid) FROM users", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
        })?;
        Ok(bounds.0.zip(bounds.1))
    }

    /// Removes a user with their API tokens and login sessions. False if there was none.
    pub fn user_remove(&self, name: &str) -> Result<bool, StoreError> {
        self.with_tx(|tx| {
            let Some(id) = tx
                .query_row(
                    "SELECT id FROM users WHERE name = ?1",
                    params![name],
                    |row| row.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(false);
            };
            tx.execute("DELETE FROM api_tokens WHERE user_id = ?1", params![id])?;
            tx.execute("DELETE FROM login_sessions WHERE user_id = ?1", params![id])?;
            tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
            Ok(true)
        })
    }

    pub fn user_get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                user_from_row,
            )
            .optional()
        })
    }

    /// Every user, by name.
    pub fn user_list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
            let rows = stmt.query_map([], user_from_row)?;
            rows.collect()
        })
    }

    /// Moves a user to another tier. False if there is no such user.
    pub fn user_set_tier(&self, name: &str, tier: &str) -> Result<bool, StoreError> {
        validate_tier(tier)?;
        self.with(|c| {
            c.execute(
                "UPDATE users SET tier = ?2 WHERE name = ?1",
                params![name, tier],
            )
            .map(|n| n > 0)
        })
    }

    /// False if there is no such user.
    pub fn user_set_role(&self, name: &str, role: Role) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE users SET role = ?2 WHERE name = ?1",
                params![name, role.as_str()],
            )
            .map(|n| n > 0)
        })
    }

    /// Replaces a user's password and ends their login sessions. False if there is no such user.
    pub fn user_set_password(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        validate_password(password)?;
        let password_hash = hash_password(password)?;
        self.with_tx(|tx| {
            let changed = tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, password_hash],
            )?;
            tx.execute(
                "DELETE FROM login_sessions WHERE user_id IN (SELECT id FROM users WHERE name = ?1)",
                params![name],
            )?;
            Ok(changed > 0)
        })
    }

    /// Restricts a user until `until` (RFC 3339) for `reason`; `until: None` lifts the
    /// restriction (and clears the reason). False if there is no such user.
    pub fn user_restrict(
        &self,
        name: &str,
        until: Option<&str>,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(until) = until {
            parse_time(until)?;
        }
        let reason = until.and(reason);
        self.with(|c| {
            c.execute(
                "UPDATE users SET restricted_until = ?2, restricted_reason = ?3 WHERE name = ?1",
                params![name, until, reason],
            )
            .map(|n| n > 0)
        })
    }

    /// The user, if `password` is theirs. An unknown name costs one argon2 verification too, so
    /// the time taken does not tell which names exist.
    pub fn user_verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let found = self.with(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS}, users.password_hash FROM users WHERE name = ?1"),
                params![name],
                |row| Ok((user_from_row(row)?, row.get::<_, String>(8)?)),
            )
            .optional()
        })?;
        if password.len() > PASSWORD_BYTES_MAX {
            return Ok(None);
        }
        match found {
            Some((user, hash)) => Ok(verify_password(password, &hash).then_some(user)),
            None => {
                verify_password(password, DUMMY_PASSWORD_HASH);
                Ok(None)
            }
        }
    }

    /// Creates an API token for `user` and returns it; this is the only time the token is seen.
    /// The store keeps only its SHA-256.
    pub fn api_token_create(
        &self,
        user: &str,
        label: &str,
        now: &str,
    ) -> Result<String, StoreError> {
        parse_time(now)?;
        let token = format!(
            "{API_TOKEN_PREFIX}{}",
            hex::encode(rand::random::<[u8; 32]>())
        );
        let token_sha256 = sha256_hex(&token);
        self.with_tx(|tx| {
            let user_id = user_id(tx, user)?;
            tx.execute(
                "INSERT INTO api_tokens (user_id, label, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user_id, label, token_sha256, now],
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The user an API token belongs to, if it is one.
    pub fn api_token_lookup(&self, token: &str) -> Result<Option<UserRecord>, StoreError> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let token_sha256 = sha256_hex(token);
        self.with(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM api_tokens JOIN users ON users.id = api_tokens.user_id WHERE api_tokens.token_sha256 = ?1"),
                params![token_sha256],
                user_from_row,
            )
            .optional()
        })
    }

    /// [`Store::api_token_lookup`], recording `now` as the token's last use.
    pub fn api_token_use(&self, token: &str, now: &str) -> Result<Option<UserRecord>, StoreError> {
        parse_time(now)?;
        let Some(user) = self.api_token_lookup(token)? else {
            return Ok(None);
        };
        let token_sha256 = sha256_hex(token);
        self.with(|c| {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE token_sha256 = ?1",
                params![token_sha256, now],
            )
        })?;
        Ok(Some(user))
    }

    /// A user's API tokens, oldest first. Errors if there is no such user.
    pub fn api_token_list(&self, user: &str) -> Result<Vec<ApiTokenInfo>, StoreError> {
        self.with_tx(|tx| {
            let user_id = user_id(tx, user)?;
            let mut stmt = tx.prepare(
                "SELECT id, label, created_at, last_used_at FROM api_tokens WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![user_id], |row| {
                Ok(ApiTokenInfo {
                    id: row.get(0)?,
                    label: row.get(1)?,
                    created_at: row.get(2)?,
                    last_used_at: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Revokes one of `user`'s tokens. False if they have no token with that id.
    pub fn api_token_revoke(&self, user: &str, id: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM api_tokens WHERE id = ?1 AND user_id IN (SELECT id FROM users WHERE name = ?2)",
                params![id, user],
            )
            .map(|n| n > 0)
        })
    }

    /// Starts a browser login session for `user`, valid until `expires_at` (RFC 3339), and
    /// returns its id; this is the only time the id is seen. The store keeps only its SHA-256.
    pub fn login_session_create(
        &self,
        user: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<String, StoreError> {
        parse_time(now)?;
        parse_time(expires_at)?;
        let id = hex::encode(rand::random::<[u8; 32]>());
        let id_sha256 = sha256_hex(&id);
        self.with_tx(|tx| {
            let user_id = user_id(tx, user)?;
            tx.execute(
                "INSERT INTO login_sessions (id_sha256, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![id_sha256, user_id, now, expires_at],
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// The user a login session belongs to, if it exists and has not expired at `now`. An
    /// expired session is deleted.
    pub fn login_session_lookup(
        &self,
        id: &str,
        now: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let now_time = parse_time(now)?;
        let id_sha256 = sha256_hex(id);
        let found = self.with(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS}, login_sessions.expires_at FROM login_sessions JOIN users ON users.id = login_sessions.user_id WHERE login_sessions.id_sha256 = ?1"),
                params![id_sha256],
                |row| Ok((user_from_row(row)?, row.get::<_, String>(8)?)),
            )
            .optional()
        })?;
        let Some((user, expires_at)) = found else {
            return Ok(None);
        };
        if parse_time(&expires_at)? > now_time {
            return Ok(Some(user));
        }
        self.with(|c| {
            c.execute(
                "DELETE FROM login_sessions WHERE id_sha256 = ?1",
                params![id_sha256],
            )
        })?;
        Ok(None)
    }

    /// Ends a login session (logout). False if there was none.
    pub fn login_session_delete(&self, id: &str) -> Result<bool, StoreError> {
        let id_sha256 = sha256_hex(id);
        self.with(|c| {
            c.execute(
                "DELETE FROM login_sessions WHERE id_sha256 = ?1",
                params![id_sha256],
            )
            .map(|n| n > 0)
        })
    }

    /// Deletes every login session expired at `now`; returns how many.
    pub fn login_session_purge_expired(&self, now: &str) -> Result<usize, StoreError> {
        let now_time = parse_time(now)?;
        self.with_tx(|tx| {
            let expired: Vec<(String, String)> = {
                let mut stmt = tx.prepare("SELECT id_sha256, expires_at FROM login_sessions")?;
                let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut removed = 0;
            for (id_sha256, expires_at) in expired {
                if parse_time(&expires_at).map_or(true, |at| at <= now_time) {
                    removed += tx.execute(
                        "DELETE FROM login_sessions WHERE id_sha256 = ?1",
                        params![id_sha256],
                    )?;
                }
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn store_with_ada() -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .user_add("ada", "correct horse", Role::User, "free", NOW)
            .unwrap();
        store
    }

    fn password_hash_of(store: &Store, name: &str) -> String {
        store
            .with(|c| {
                c.query_row(
                    "SELECT password_hash FROM users WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
            })
            .unwrap()
    }

    #[test]
    fn dummy_hash_uses_the_parameters_real_hashes_use() {
        let real = hash_password("anything at all").unwrap();
        let params_of = |hash: &str| {
            let parsed = PasswordHash::new(hash).unwrap();
            (
                parsed.algorithm.to_string(),
                parsed.version,
                parsed.params.to_string(),
            )
        };
        assert_eq!(params_of(DUMMY_PASSWORD_HASH), params_of(&real));
    }

    #[test]
    fn uids_come_from_the_configured_range_until_it_is_used_up() {
        let store = Store::open_in_memory()
            .unwrap()
            .with_uid_range(crate::UidRange {
                base: 500_000,
                count: 3,
            });
        assert_eq!(store.user_uid_bounds().unwrap(), None);
        let now = "2026-01-01T00:00:00Z";
        let a = store
            .user_add("a", "password1", Role::User, "free", now)
            .unwrap();
        let b = store
            .user_add("b", "password1", Role::User, "free", now)
            .unwrap();
        // Ids count from 1, so the range's first uid is never given.
        assert_eq!((a.uid, b.uid), (500_001, 500_002));
        let err = store
            .user_add("c", "password1", Role::User, "free", now)
            .unwrap_err();
        assert!(matches!(err, StoreError::UidRangeFull { .. }), "{err}");
        assert!(store.user_get("c").unwrap().is_none(), "nothing half-made");
        assert_eq!(store.user_uid_bounds().unwrap(), Some((a.uid, b.uid)));
        let range = crate::UidRange { base: 10, count: 5 };
        assert!(range.contains(10) && range.contains(14) && !range.contains(15));
        assert!(range.overlaps(&crate::UidRange { base: 14, count: 1 }));
        assert!(!range.overlaps(&crate::UidRange {
            base: 15,
            count: 10
        }));
    }

    #[test]
    fn user_add_hashes_the_password_and_assigns_a_uid() {
        let store = store_with_ada();
        let ada = store.user_get("ada").unwrap().unwrap();
        assert_eq!(ada.role, Role::User);
        assert_eq!(ada.tier, "free");
        assert_eq!(ada.uid, USER_UID_BASE + ada.id as u32);
        assert_eq!(ada.created_at, NOW);
        let hash = password_hash_of(&store, "ada");
        assert!(!hash.contains("correct horse"), "{hash}");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let bob = store
            .user_add("bob", "correct horse", Role::Admin, "pro", NOW)
            .unwrap();
        assert_ne!(bob.uid, ada.uid);
        assert_ne!(password_hash_of(&store, "bob"), hash, "salts differ");
    }

    #[test]
    fn user_add_rejects_bad_names_short_passwords_and_duplicates() {
        let store = store_with_ada();
        for name in ["", "Ada", "1ada", "ada!", "ad a", &"a".repeat(33), "ådam"] {
            let err = store
                .user_add(name, "long enough", Role::User, "free", NOW)
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidName(_)), "{name}: {err}");
        }
        assert!(store
            .user_add(&"a".repeat(32), "long enough", Role::User, "free", NOW)
            .is_ok());
        let err = store
            .user_add("eve", "short", Role::User, "free", NOW)
            .unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        let err = store
            .user_add("ada", "long enough", Role::User, "free", NOW)
            .unwrap_err();
        assert!(matches!(err, StoreError::UserExists(_)), "{err}");
        let err = store
            .user_add("eve", "long enough", Role::User, "no tier!", NOW)
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidTier(_)), "{err}");
    }

    #[test]
    fn uids_of_removed_users_are_not_reused() {
        let store = store_with_ada();
        let ada = store.user_get("ada").unwrap().unwrap();
        assert!(store.user_remove("ada").unwrap());
        let again = store
            .user_add("ada", "correct horse", Role::User, "free", NOW)
            .unwrap();
        assert_ne!(again.uid, ada.uid);
    }

    #[test]
    fn verify_password_accepts_the_right_one_only() {
        let store = store_with_ada();
        let ada = store.user_verify_password("ada", "correct horse").unwrap();
        assert_eq!(ada.unwrap().name, "ada");
        assert!(store
            .user_verify_password("ada", "wrong horse")
            .unwrap()
            .is_none());
        assert!(store
            .user_verify_password("nobody", "correct horse")
            .unwrap()
            .is_none());
        assert!(store
            .user_verify_password("ada", &"x".repeat(PASSWORD_BYTES_MAX + 1))
            .unwrap()
            .is_none());
    }

    #[test]
    fn set_password_replaces_it_and_ends_login_sessions() {
        let store = store_with_ada();
        let session = store
            .login_session_create("ada", NOW, "2026-01-02T00:00:00Z")
            .unwrap();
        assert!(store.user_set_password("ada", "battery staple").unwrap());
        assert!(store
            .user_verify_password("ada", "correct horse")
            .unwrap()
            .is_none());
        assert!(store
            .user_verify_password("ada", "battery staple")
            .unwrap()
            .is_some());
        assert!(store.login_session_lookup(&session, NOW).unwrap().is_none());
        assert!(!store.user_set_password("nobody", "battery staple").unwrap());
        assert!(matches!(
            store.user_set_password("ada", "short").unwrap_err(),
            StoreError::WeakPassword { .. }
        ));
    }

    #[test]
    fn list_set_tier_set_role_and_remove() {
        let store = store_with_ada();
        store
            .user_add("bob", "correct horse", Role::User, "free", NOW)
            .unwrap();
        let names: Vec<String> = store
            .user_list()
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["ada", "bob"]);
        assert!(store.user_set_tier("ada", "pro").unwrap());
        assert!(store.user_set_role("ada", Role::Admin).unwrap());
        let ada = store.user_get("ada").unwrap().unwrap();
        assert_eq!((ada.tier.as_str(), ada.role), ("pro", Role::Admin));
        assert!(!store.user_set_tier("nobody", "pro").unwrap());
        assert!(!store.user_set_role("nobody", Role::Admin).unwrap());
        assert!(store.user_remove("bob").unwrap());
        assert!(!store.user_remove("bob").unwrap());
        assert!(store.user_get("bob").unwrap().is_none());
        assert_eq!(store.user_list().unwrap().len(), 1);
    }

    #[test]
    fn restriction_is_set_and_lifted() {
        let store = store_with_ada();
        assert!(store
            .user_restrict("ada", Some("2026-01-08T00:00:00Z"), Some("mining"))
            .unwrap());
        let ada = store.user_get("ada").unwrap().unwrap();
        assert_eq!(ada.restricted_reason.as_deref(), Some("mining"));
        assert!(ada.is_restricted_at(NOW).unwrap());
        assert!(!ada.is_restricted_at("2026-01-09T00:00:00+01:00").unwrap());
        assert!(store.user_restrict("ada", None, Some("ignored")).unwrap());
        let ada = store.user_get("ada").unwrap().unwrap();
        assert_eq!((ada.restricted_until, ada.restricted_reason), (None, None));
        assert!(!store.user_restrict("nobody", None, None).unwrap());
        assert!(matches!(
            store
                .user_restrict("ada", Some("next week"), None)
                .unwrap_err(),
            StoreError::InvalidTime { .. }
        ));
    }

    #[test]
    fn roles_round_trip_through_strings() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn api_tokens_are_stored_only_as_hashes() {
        let store = store_with_ada();
        let token = store.api_token_create("ada", "laptop", NOW).unwrap();
        assert!(
            token.starts_with("clt_") && token.len() == 4 + 64,
            "{token}"
        );
        let stored: Vec<String> = store
            .with(|c| {
                let mut stmt = c.prepare("SELECT * FROM api_tokens")?;
                let columns = stmt.column_count();
                let rows = stmt.query_map([], |row| {
                    (0..columns)
                        .map(|i| {
                            row.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.concat())
            })
            .unwrap();
        assert!(
            stored.iter().all(|v| !v.contains(&token[4..])),
            "{stored:?}"
        );
        assert!(stored.iter().any(|v| v.contains(&sha256_hex(&token))));
        assert_eq!(store.api_token_lookup(&token).unwrap().unwrap().name, "ada");
        assert!(store.api_token_lookup("clt_00").unwrap().is_none());
        assert!(store.api_token_lookup(&token[4..]).unwrap().is_none());
    }

    #[test]
    fn api_tokens_are_listed_used_and_revoked() {
        let store = store_with_ada();
        store
            .user_add("bob", "correct horse", Role::User, "free", NOW)
            .unwrap();
        let token = store.api_token_create("ada", "laptop", NOW).unwrap();
        let listed = store.api_token_list("ada").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].label.as_str(), listed[0].last_used_at.as_deref()),
            ("laptop", None)
        );
        let later = "2026-01-01T01:00:00Z";
        assert!(store.api_token_use(&token, later).unwrap().is_some());
        assert_eq!(
            store.api_token_list("ada").unwrap()[0]
                .last_used_at
                .as_deref(),
            Some(later)
        );
        assert!(store.api_token_list("bob").unwrap().is_empty());
        assert!(matches!(
            store.api_token_list("nobody").unwrap_err(),
            StoreError::NoSuchUser(_)
        ));
        assert!(matches!(
            store.api_token_create("nobody", "x", NOW).unwrap_err(),
            StoreError::NoSuchUser(_)
        ));
        assert!(
            !store.api_token_revoke("bob", listed[0].id).unwrap(),
            "not bob's"
        );
        assert!(store.api_token_revoke("ada", listed[0].id).unwrap());
        assert!(store.api_token_lookup(&token).unwrap().is_none());
    }

    #[test]
    fn login_sessions_expire_and_end() {
        let store = store_with_ada();
        let expires = "2026-01-01T12:00:00Z";
        let id = store.login_session_create("ada", NOW, expires).unwrap();
        assert_eq!(id.len(), 64);
        let stored: String = store
            .with(|c| c.query_row("SELECT id_sha256 FROM login_sessions", [], |row| row.get(0)))
            .unwrap();
        assert_eq!(stored, sha256_hex(&id));
        assert_eq!(
            store.login_session_lookup(&id, NOW).unwrap().unwrap().name,
            "ada"
        );
        assert!(store.login_session_lookup("nope", NOW).unwrap().is_none());
        assert!(
            store.login_session_lookup(&id, expires).unwrap().is_none(),
            "expired"
        );
        assert!(
            store.login_session_lookup(&id, NOW).unwrap().is_none(),
            "and deleted"
        );
        let id = store.login_session_create("ada", NOW, expires).unwrap();
        assert!(store.login_session_delete(&id).unwrap());
        assert!(!store.login_session_delete(&id).unwrap());
        assert!(store.login_session_lookup(&id, NOW).unwrap().is_none());
        assert!(matches!(
            store
                .login_session_create("nobody", NOW, expires)
                .unwrap_err(),
            StoreError::NoSuchUser(_)
        ));
    }

    #[test]
    fn expired_login_sessions_are_purged() {
        let store = store_with_ada();
        store
            .login_session_create("ada", NOW, "2026-01-01T01:00:00Z")
            .unwrap();
        let live = store
            .login_session_create("ada", NOW, "2026-01-03T00:00:00Z")
            .unwrap();
        assert_eq!(
            store
                .login_session_purge_expired("2026-01-02T00:00:00Z")
                .unwrap(),
            1
        );
        assert!(store.login_session_lookup(&live, NOW).unwrap().is_some());
    }

    #[test]
    fn removing_a_user_removes_their_tokens_and_sessions() {
        let store = store_with_ada();
        let token = store.api_token_create("ada", "laptop", NOW).unwrap();
        let session = store
            .login_session_create("ada", NOW, "2026-01-02T00:00:00Z")
            .unwrap();
        assert!(store.user_remove("ada").unwrap());
        store
            .user_add("ada", "correct horse", Role::User, "free", NOW)
            .unwrap();
        assert!(store.api_token_lookup(&token).unwrap().is_none());
        assert!(store.login_session_lookup(&session, NOW).unwrap().is_none());
        let remaining: i64 = store
            .with(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM api_tokens) + (SELECT COUNT(*) FROM login_sessions)",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(remaining, 0);
    }
}
