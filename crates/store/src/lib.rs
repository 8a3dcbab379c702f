//! Durable state. The store is the source of truth for which kernels and sessions exist; the
//! manager's memory is a cache rebuilt from it on start.
//!
//! SQLite is the default engine, with migrations applied in order on open. The store knows
//! nothing of kernels' processes or sockets: it keeps records given to it as plain values.
//!
//! Accounts (users, API tokens, login sessions) live in [`users`](crate::UserRecord) and the
//! tamper-evident audit log in [`audit`](crate::AuditRecord), the usage ledger per user per day
//! in [`usage`](crate::UsageDay). Time is always an argument: the store reads no clock.

mod appeals;
mod audit;
mod usage;
mod users;

pub use appeals::{
    AppealDecision, AppealRecord, AppealStatus, APPEALS_LISTED_MAX, APPEAL_MESSAGE_CHARS_MAX,
    DECISION_NOTE_CHARS_MAX,
};
pub use audit::{AuditBreak, AuditRecord, AuditVerify, AUDIT_ACTIONS, AUDIT_GENESIS_HASH};
pub use usage::{Usage, UsageDay, USAGE_DAYS_LISTED_MAX};

pub use users::{
    validate_user_name, ApiTokenInfo, Role, UserRecord, PASSWORD_BYTES_MAX, PASSWORD_CHARS_MIN,
    USER_UID_BASE,
};

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE kernels (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        connection TEXT NOT NULL,
        runtime TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        kernel_id TEXT NOT NULL
    );
    CREATE INDEX sessions_by_path ON sessions(path);",
    "CREATE TABLE findings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kernel_id TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        action TEXT NOT NULL,
        category TEXT,
        shadow INTEGER NOT NULL,
        verdict TEXT NOT NULL
    );
    CREATE INDEX findings_by_kernel ON findings(kernel_id);",
    // Accounts. AUTOINCREMENT keeps a removed user's id (and so their host uid) from being reused.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
        tier TEXT NOT NULL,
        uid INTEGER NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        restricted_until TEXT,
        restricted_reason TEXT
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id),
        label TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT
    );
    CREATE INDEX api_tokens_by_user ON api_tokens(user_id);
    CREATE TABLE login_sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX login_sessions_by_user ON login_sessions(user_id);",
    // The audit log: append-only, each record chained to the previous one by hash.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT,
        action TEXT NOT NULL,
        subject TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: records cannot be changed'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: records cannot be deleted'); END;",
    // Kernels, sessions and findings belong to a user (`''` on a single-user server); a
    // store handle scoped to one owner reads and writes only theirs.
    "ALTER TABLE kernels ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE findings ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX kernels_by_owner ON kernels(owner);
    CREATE INDEX sessions_by_owner ON sessions(owner);
    CREATE INDEX findings_by_owner ON findings(owner);",
    // Appeals of a finding (`finding_id`) or of the user's restriction (`finding_id` NULL). At
    // most one open appeal per finding, and one open restriction appeal per user.
    "CREATE TABLE appeals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user TEXT NOT NULL,
        finding_id INTEGER REFERENCES findings(id),
        message TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'granted', 'denied')),
        created_at TEXT NOT NULL,
        decided_by TEXT,
        decision_note TEXT,
        decided_at TEXT
    );
    CREATE INDEX appeals_by_user ON appeals(user);
    CREATE INDEX appeals_by_status ON appeals(status);
    CREATE UNIQUE INDEX appeals_open_per_finding ON appeals(finding_id)
        WHERE status = 'open' AND finding_id IS NOT NULL;
    CREATE UNIQUE INDEX appeals_open_restriction_per_user ON appeals(user)
        WHERE status = 'open' AND finding_id IS NULL;",
    // The usage ledger: one row per user per UTC day (`YYYY-MM-DD`).
    "CREATE TABLE usage_days (
        user TEXT NOT NULL,
        day TEXT NOT NULL,
        cpu_seconds REAL NOT NULL DEFAULT 0,
        gpu_seconds_held REAL NOT NULL DEFAULT 0,
        gpu_seconds_busy REAL NOT NULL DEFAULT 0,
        kernel_seconds REAL NOT NULL DEFAULT 0,
        memory_bytes_peak INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user, day)
    ) WITHOUT ROWID;",
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database at {path} was written by a newer version (schema {found}, this build knows {known})")]
    TooNew {
        path: String,
        found: i64,
        known: usize,
    },
    #[error("invalid user name `{0}`: use 1 to 32 characters, a lowercase letter first, then lowercase letters, digits, `_` or `-`")]
    InvalidName(String),
    #[error("a user named `{0}` already exists")]
    UserExists(String),
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    #[error("password is too short: use at least {min_chars} characters")]
    WeakPassword { min_chars: usize },
    #[error("password is too long: use at most {max_bytes} bytes")]
    PasswordTooLong { max_bytes: usize },
    #[error("unknown role `{0}`: use `user` or `admin`")]
    InvalidRole(String),
    #[error("invalid tier name `{0}`: use 1 to 64 characters, letters, digits, `_` or `-`")]
    InvalidTier(String),
    #[error("invalid time `{value}`: expected RFC 3339, e.g. 2026-01-01T00:00:00Z")]
    InvalidTime { value: String },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("unknown audit action `{0}`: add it to AUDIT_ACTIONS, whose names are stable")]
    UnknownAuditAction(String),
    #[error("audit log record {seq} has detail that is not JSON: {reason}")]
    AuditDetail { seq: i64, reason: String },
    #[error("no finding {0} of yours")]
    NoSuchFinding(i64),
    #[error("no appeal {0}")]
    NoSuchAppeal(i64),
    #[error("{user} has no restriction to appeal; to appeal a finding, name its id")]
    NothingToAppeal { user: String },
    #[error("an appeal of this {what} is already open (appeal {id}); wait for its decision")]
    AppealOpen { what: &'static str, id: i64 },
    #[error("appeal {id} was already decided: {status}")]
    AppealDecided { id: i64, status: String },
    #[error("an appeal's message must have 1 to {max_chars} characters")]
    InvalidAppealMessage { max_chars: usize },
    #[error("a decision note must have at most {max_chars} characters")]
    InvalidDecisionNote { max_chars: usize },
    #[error("unknown appeal status `{0}`: use `open`, `granted` or `denied`")]
    InvalidAppealStatus(String),
    #[error("`{0}` is not an administrator")]
    NotAdmin(String),
    #[error("invalid day `{0}`: expected a UTC date as YYYY-MM-DD, e.g. 2026-01-31")]
    InvalidDay(String),
    #[error("invalid usage {0}: amounts must be finite and not negative")]
    InvalidUsage(String),
    #[error("a store handle scoped to `{owner}` cannot record usage of `{user}`")]
    NotYourUsage { owner: String, user: String },
    #[error("no uid is left for a new user: the range {base}..={last} is used up; raise accounts.uid_count")]
    UidRangeFull { base: u32, last: u32 },
}

/// A kernel the server started, with what is needed to reconnect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRecord {
    pub id: String,
    pub name: String,
    /// The connection file's contents, as JSON.
    pub connection: String,
    /// The backend's record of the runtime, as JSON.
    pub runtime: String,
    pub started_at: String,
}

/// A session: a document path bound to a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub path: String,
    pub name: String,
    pub kind: String,
    pub kernel_id: String,
}

/// A policy verdict about one cell or runtime, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRecord {
    pub at: String,
    pub kernel_id: String,
    pub msg_id: String,
    pub action: String,
    pub category: Option<String>,
    /// True when only shadow-mode rules matched: recorded, not acted on.
    pub shadow: bool,
    /// The whole verdict, as JSON.
    pub verdict: String,
}

/// A stored finding with its id and owner, as [`Store::finding_list`] and
/// [`Store::finding_get`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    pub id: i64,
    /// The user whose kernel it is about (`""` on a single-user server).
    pub owner: String,
    pub record: FindingRecord,
}

/// The most findings one [`Store::finding_list`] returns.
pub const FINDINGS_LISTED_MAX: usize = 1000;

/// The store. Cheap operations run under one lock; it is never held across an await.
///
/// A handle is scoped to one owner: kernels, sessions and findings are written with that
/// owner's name and only that owner's are read back, so a user's server given a scoped handle
/// ([`Store::for_owner`]) cannot see or prune another user's records. Accounts and the audit
/// log are not scoped. A freshly opened store is scoped to `""`, the single-user server.
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    owner: String,
    uids: UidRange,
}

/// The host uids this server gives its users: `base + id` for user `id`, below `base + count`.
/// Two servers on one host need ranges that do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub base: u32,
    pub count: u32,
}

impl Default for UidRange {
    fn default() -> Self {
        UidRange {
            base: USER_UID_BASE,
            count: 65_536,
        }
    }
}

impl UidRange {
    /// The last uid in the range.
    pub fn last(&self) -> u32 {
        self.base.saturating_add(self.count.saturating_sub(1))
    }

    pub fn contains(&self, uid: u32) -> bool {
        uid >= self.base && uid <= self.last()
    }

    pub fn overlaps(&self, other: &UidRange) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        Store::migrate(connection, &path.display().to_string())
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::migrate(Connection::open_in_memory()?, ":memory:")
    }

    fn migrate(mut connection: Connection, path: &str) -> Result<Store, StoreError> {
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: path.into(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (idx, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", (idx + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
            owner: String::new(),
            uids: UidRange::default(),
        })
    }

    /// A handle on the same database scoped to `owner`'s kernels, sessions and findings.
    pub fn for_owner(&self, owner: &str) -> Store {
        Store {
            connection: self.connection.clone(),
            owner: owner.to_owned(),
            uids: self.uids,
        }
    }

    /// Gives new users uids from `uids` (default [`UidRange::default`]).
    pub fn with_uid_range(mut self, uids: UidRange) -> Store {
        self.uids = uids;
        self
    }

    /// The owner this handle is scoped to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs `f` in one write transaction under the lock, taken `IMMEDIATE` so that another
    /// process writing the same database (the CLI beside a running server) waits instead of
    /// interleaving. Commits when `f` succeeds.
    fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .expect("store lock is never poisoned");
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let connection = self
            .connection
            .lock()
            .expect("store lock is never poisoned");
        Ok(f(&connection)?)
    }

    pub fn insert_kernel(&self, record: &KernelRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO kernels (id, name, connection, runtime, started_at, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![record.id, record.name, record.connection, record.runtime, record.started_at, self.owner],
            )
            .map(|_| ())
        })
    }

    pub fn update_kernel_runtime(&self, id: &str, runtime: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE kernels SET runtime = ?2 WHERE id = ?1 AND owner = ?3",
                params![id, runtime, self.owner],
            )
            .map(|_| ())
        })
    }

    pub fn delete_kernel(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM kernels WHERE id = ?1 AND owner = ?2",
                params![id, self.owner],
            )
            .map(|_| ())
        })
    }

    pub fn kernels(&self) -> Result<Vec<KernelRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, name, connection, runtime, started_at FROM kernels WHERE owner = ?1 ORDER BY started_at",
            )?;
            let rows = stmt.query_map(params![self.owner], |row| {
                Ok(KernelRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    connection: row.get(2)?,
                    runtime: row.get(3)?,
                    started_at: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn upsert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO sessions (id, path, name, type, kernel_id, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![record.id, record.path, record.name, record.kind, record.kernel_id, self.owner],
            )
            .map(|_| ())
        })
    }

    pub fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE id = ?1 AND owner = ?2",
                params![id, self.owner],
            )
            .map(|_| ())
        })
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, path, name, type, kernel_id FROM sessions WHERE id = ?1 AND owner = ?2",
                params![id, self.owner],
                session_from_row,
            )
            .optional()
        })
    }

    pub fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, path, name, type, kernel_id FROM sessions WHERE owner = ?1 ORDER BY rowid")?;
            let rows = stmt.query_map(params![self.owner], session_from_row)?;
            rows.collect()
        })
    }
}

impl Store {
    pub fn insert_finding(&self, record: &FindingRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO findings (at, kernel_id, msg_id, action, category, shadow, verdict, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![record.at, record.kernel_id, record.msg_id, record.action, record.category, record.shadow, record.verdict, self.owner],
            )
            .map(|_| ())
        })
    }

    /// Findings about one kernel, oldest first.
    pub fn findings_for_kernel(&self, kernel_id: &str) -> Result<Vec<FindingRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT at, kernel_id, msg_id, action, category, shadow, verdict FROM findings WHERE kernel_id = ?1 AND owner = ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![kernel_id, self.owner], |row| {
                Ok(FindingRecord {
                    at: row.get(0)?,
                    kernel_id: row.get(1)?,
                    msg_id: row.get(2)?,
                    action: row.get(3)?,
                    category: row.get(4)?,
                    shadow: row.get(5)?,
                    verdict: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Findings, newest first, at most `limit` (capped at [`FINDINGS_LISTED_MAX`]): `owner`'s,
    /// or everyone's with `None`. Reading across owners is the hub's: a handle scoped with
    /// [`Store::for_owner`] reads only its own owner's findings whatever it asks for.
    pub fn finding_list(
        &self,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        let owner = match (self.owner.as_str(), owner) {
            ("", owner) => owner,
            (mine, Some(asked)) if asked != mine => return Ok(Vec::new()),
            (mine, _) => Some(mine),
        };
        let limit = limit.min(FINDINGS_LISTED_MAX) as i64;
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, owner, at, kernel_id, msg_id, action, category, shadow, verdict FROM findings WHERE (?1 IS NULL OR owner = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![owner, limit], stored_finding_from_row)?;
            rows.collect()
        })
    }

    /// One finding by id, whoever owns it; a handle scoped with [`Store::for_owner`] finds only
    /// its own owner's.
    pub fn finding_get(&self, id: i64) -> Result<Option<StoredFinding>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, owner, at, kernel_id, msg_id, action, category, shadow, verdict FROM findings WHERE id = ?1 AND (?2 = '' OR owner = ?2)",
                params![id, self.owner],
                stored_finding_from_row,
            )
            .optional()
        })
    }
}

fn stored_finding_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFinding> {
    Ok(StoredFinding {
        id: row.get(0)?,
        owner: row.get(1)?,
        record: FindingRecord {
            at: row.get(2)?,
            kernel_id: row.get(3)?,
            msg_id: row.get(4)?,
            action: row.get(5)?,
            category: row.get(6)?,
            shadow: row.get(7)?,
            verdict: row.get(8)?,
        },
    })
}

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get(0)?,
        path: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        kernel_id: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(id: &str) -> KernelRecord {
        KernelRecord {
            id: id.into(),
            name: "python3".into(),
            connection: "{}".into(),
            runtime: "{}".into(),
            started_at: format!("2026-01-01T00:00:0{id}Z"),
        }
    }

    #[test]
    fn records_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let store = Store::open_sqlite(&path).unwrap();
            store.insert_kernel(&kernel("1")).unwrap();
            store.insert_kernel(&kernel("2")).unwrap();
            store.delete_kernel("1").unwrap();
            let session = SessionRecord {
                id: "s".into(),
                path: "a.ipynb".into(),
                name: "a".into(),
                kind: "notebook".into(),
                kernel_id: "2".into(),
            };
            store.upsert_session(&session).unwrap();
        }
        let store = Store::open_sqlite(&path).unwrap();
        assert_eq!(store.kernels().unwrap(), vec![kernel("2")]);
        assert_eq!(store.session("s").unwrap().unwrap().kernel_id, "2");
        assert_eq!(store.sessions().unwrap().len(), 1);
        store.delete_session("s").unwrap();
        assert!(store.session("s").unwrap().is_none());
    }

    #[test]
    fn an_owner_scoped_handle_sees_and_changes_only_its_owners_records() {
        let store = Store::open_in_memory().unwrap();
        let (alice, bob) = (store.for_owner("alice"), store.for_owner("bob"));
        alice.insert_kernel(&kernel("1")).unwrap();
        bob.insert_kernel(&kernel("2")).unwrap();
        let session = |id: &str, kernel_id: &str| SessionRecord {
            id: id.into(),
            path: "a.ipynb".into(),
            name: "a".into(),
            kind: "notebook".into(),
            kernel_id: kernel_id.into(),
        };
        alice.upsert_session(&session("sa", "1")).unwrap();
        bob.upsert_session(&session("sb", "2")).unwrap();
        assert_eq!(alice.kernels().unwrap(), vec![kernel("1")]);
        assert_eq!(bob.kernels().unwrap(), vec![kernel("2")]);
        assert!(
            store.kernels().unwrap().is_empty(),
            "the unscoped handle is the '' owner"
        );
        assert!(alice.session("sb").unwrap().is_none());
        assert_eq!(alice.sessions().unwrap().len(), 1);
        // Deleting or replacing by another owner's id does nothing to theirs.
        alice.delete_kernel("2").unwrap();
        alice.delete_session("sb").unwrap();
        alice.update_kernel_runtime("2", "changed").unwrap();
        assert_eq!(bob.kernels().unwrap(), vec![kernel("2")]);
        assert!(bob.session("sb").unwrap().is_some());
        let finding = FindingRecord {
            at: "t".into(),
            kernel_id: "2".into(),
            msg_id: "m".into(),
            action: "warn".into(),
            category: None,
            shadow: false,
            verdict: "{}".into(),
        };
        bob.insert_finding(&finding).unwrap();
        assert!(alice.findings_for_kernel("2").unwrap().is_empty());
        assert_eq!(bob.findings_for_kernel("2").unwrap(), vec![finding]);
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let err = Store::open_sqlite(&path).err().unwrap();
        assert!(err.to_string().contains("newer version"), "{err}");
    }
}
