//! Appeals: a user asks an administrator to reverse a policy finding or their account's
//! restriction, and an administrator grants or denies it with a note.
//!
//! A user may appeal only their own finding, or their restriction while it lasts. At most one
//! appeal of a finding, and one of a user's restriction, is open at a time (a unique index holds
//! this even against another process). Only an open appeal can be decided, and only by an
//! administrator; granting a restriction appeal lifts the restriction.
//!
//! Appeals belong to the hub, like accounts and the audit log: they are not scoped by
//! [`Store::for_owner`]. Recording the appeal and the decision in the audit log is the caller's.

use std::str::FromStr;

use rusqlite::{params, OptionalExtension};

use crate::users::parse_time;
use crate::{Store, StoreError};

/// The longest appeal message, in characters.
pub const APPEAL_MESSAGE_CHARS_MAX: usize = 4000;

/// The longest decision note, in characters.
pub const DECISION_NOTE_CHARS_MAX: usize = 4000;

/// The most appeals one [`Store::appeal_list`] returns (the newest).
pub const APPEALS_LISTED_MAX: usize = 1000;

/// Where an appeal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppealStatus {
    Open,
    Granted,
    Denied,
}

impl AppealStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppealStatus::Open => "open",
            AppealStatus::Granted => "granted",
            AppealStatus::Denied => "denied",
        }
    }
}

impl std::fmt::Display for AppealStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppealStatus {
    type Err = StoreError;

    fn from_str(value: &str) -> Result<AppealStatus, StoreError> {
        match value {
            "open" => Ok(AppealStatus::Open),
            "granted" => Ok(AppealStatus::Granted),
            "denied" => Ok(AppealStatus::Denied),
            other => Err(StoreError::InvalidAppealStatus(other.into())),
        }
    }
}

/// One appeal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealRecord {
    pub id: i64,
    /// The user who appealed.
    pub user: String,
    /// The finding appealed; `None` for an appeal of the user's restriction.
    pub finding_id: Option<i64>,
    pub message: String,
    pub status: AppealStatus,
    pub created_at: String,
    /// The administrator who decided it.
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub decided_at: Option<String>,
}

/// What [`Store::appeal_decide`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealDecision {
    /// The appeal as decided.
    pub appeal: AppealRecord,
    /// Whether granting it lifted the user's restriction.
    pub restriction_lifted: bool,
}

const APPEAL_COLUMNS: &str =
    "id, user, finding_id, message, status, created_at, decided_by, decision_note, decided_at";

fn appeal_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppealRecord> {
    let status: String = row.get(4)?;
    let status = status.parse::<AppealStatus>().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(AppealRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        finding_id: row.get(2)?,
        message: row.get(3)?,
        status,
        created_at: row.get(5)?,
        decided_by: row.get(6)?,
        decision_note: row.get(7)?,
        decided_at: row.get(8)?,
    })
}

fn appeal_by_id(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<AppealRecord>> {
    c.query_row(
        &format!("SELECT {APPEAL_COLUMNS} FROM appeals WHERE id = ?1"),
        params![id],
        appeal_from_row,
    )
    .optional()
}

impl Store {
    /// Records `user`'s appeal of their finding `finding_id`, or of their current restriction
    /// when `finding_id` is `None`. The message is trimmed and must then have 1 to
    /// [`APPEAL_MESSAGE_CHARS_MAX`] characters. Another user's finding, or one that does not
    /// exist, is [`StoreError::NoSuchFinding`] alike; a restriction appeal without a restriction
    /// in force at `now` is [`StoreError::NothingToAppeal`]; a second open appeal of the same
    /// thing is [`StoreError::AppealOpen`].
    pub fn appeal_create(
        &self,
        user: &str,
        finding_id: Option<i64>,
        message: &str,
        now: &str,
    ) -> Result<AppealRecord, StoreError> {
        let now_time = parse_time(now)?;
        let message = message.trim();
        if message.is_empty() || message.chars().count() > APPEAL_MESSAGE_CHARS_MAX {
            return Err(StoreError::InvalidAppealMessage {
                max_chars: APPEAL_MESSAGE_CHARS_MAX,
            });
        }
        self.with_tx(|tx| {
            let restricted_until: Option<String> = tx
                .query_row(
                    "SELECT restricted_until FROM users WHERE name = ?1",
                    params![user],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NoSuchUser(user.into()))?;
            let open: Option<i64> = match finding_id {
                Some(finding_id) => {
                    let owner: Option<String> = tx
                        .query_row(
                            "SELECT owner FROM findings WHERE id = ?1",
                            params![finding_id],
                            |row| row.get(0),
                        )
                        .optional()?;
                    if owner.as_deref() != Some(user) {
                        return Err(StoreError::NoSuchFinding(finding_id));
                    }
                    tx.query_row(
                        "SELECT id FROM appeals WHERE finding_id = ?1 AND status = 'open'",
                        params![finding_id],
                        |row| row.get(0),
                    )
                    .optional()?
                }
                None => {
                    let restricted = match &restricted_until {
                        Some(until) => parse_time(until)? > now_time,
                        None => false,
                    };
                    if !restricted {
                        return Err(StoreError::NothingToAppeal { user: user.into() });
                    }
                    tx.query_row(
                        "SELECT id FROM appeals WHERE user = ?1 AND finding_id IS NULL AND status = 'open'",
                        params![user],
                        |row| row.get(0),
                    )
                    .optional()?
                }
            };
            if let Some(id) = open {
                let what = if finding_id.is_some() {
                    "finding"
                } else {
                    "restriction"
                };
                return Err(StoreError::AppealOpen { what, id });
            }
            tx.execute(
                "INSERT INTO appeals (user, finding_id, message, status, created_at) VALUES (?1, ?2, ?3, 'open', ?4)",
                params![user, finding_id, message, now],
            )?;
            Ok(AppealRecord {
                id: tx.last_insert_rowid(),
                user: user.into(),
                finding_id,
                message: message.into(),
                status: AppealStatus::Open,
                created_at: now.into(),
                decided_by: None,
                decision_note: None,
                decided_at: None,
            })
        })
    }

    pub fn appeal_get(&self, id: i64) -> Result<Option<AppealRecord>, StoreError> {
        self.with(|c| appeal_by_id(c, id))
    }

    /// Appeals, newest first (at most [`APPEALS_LISTED_MAX`]): `user`'s or everyone's, with
    /// `status` (`open`, `granted`, `denied`) or any.
    pub fn appeal_list(
        &self,
        user: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<AppealRecord>, StoreError> {
        let status = status.map(AppealStatus::from_str).transpose()?;
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {APPEAL_COLUMNS} FROM appeals WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    user,
                    status.map(AppealStatus::as_str),
                    APPEALS_LISTED_MAX as i64
                ],
                appeal_from_row,
            )?;
            rows.collect()
        })
    }

    /// Decides the open appeal `id`: `admin` (an administrator) grants or denies it with `note`
    /// (at most [`DECISION_NOTE_CHARS_MAX`] characters; empty for none). A decided appeal is
    /// [`StoreError::AppealDecided`] and stays as it was. Granting an appeal of a restriction
    /// lifts the user's restriction.
    pub fn appeal_decide(
        &self,
        id: i64,
        admin: &str,
        grant: bool,
        note: &str,
        now: &str,
    ) -> Result<AppealDecision, StoreError> {
        parse_time(now)?;
        let note = note.trim();
        if note.chars().count() > DECISION_NOTE_CHARS_MAX {
            return Err(StoreError::InvalidDecisionNote {
                max_chars: DECISION_NOTE_CHARS_MAX,
            });
        }
        let note = (!note.is_empty()).then_some(note);
        let status = if grant {
            AppealStatus::Granted
        } else {
            AppealStatus::Denied
        };
        let (appeal, restricted) = self.with_tx(|tx| {
            let role: Option<String> = tx
                .query_row(
                    "SELECT role FROM users WHERE name = ?1",
                    params![admin],
                    |row| row.get(0),
                )
                .optional()?;
            if role.as_deref() != Some("admin") {
                return Err(StoreError::NotAdmin(admin.into()));
            }
            let appeal = appeal_by_id(tx, id)?.ok_or(StoreError::NoSuchAppeal(id))?;
            if appeal.status != AppealStatus::Open {
                return Err(StoreError::AppealDecided {
                    id,
                    status: appeal.status.to_string(),
                });
            }
            tx.execute(
                "UPDATE appeals SET status = ?2, decided_by = ?3, decision_note = ?4, decided_at = ?5 WHERE id = ?1",
                params![id, status.as_str(), admin, note, now],
            )?;
            let restricted: bool = tx
                .query_row(
                    "SELECT restricted_until IS NOT NULL FROM users WHERE name = ?1",
                    params![appeal.user],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(false);
            let appeal = AppealRecord {
                status,
                decided_by: Some(admin.into()),
                decision_note: note.map(Into::into),
                decided_at: Some(now.into()),
                ..appeal
            };
            Ok((appeal, restricted))
        })?;
        // Only the one decision that moved the appeal out of `open` gets here, so the lift
        // happens once; it is a separate write because the restriction is the accounts'.
        let lift = grant && appeal.finding_id.is_none() && restricted;
        let restriction_lifted = lift && self.user_restrict(&appeal.user, None, None)?;
        Ok(AppealDecision {
            appeal,
            restriction_lifted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FindingRecord, Role};

    const NOW: &str = "2026-01-01T00:00:00Z";
    const LATER: &str = "2026-01-01T01:00:00Z";

    fn finding(kernel_id: &str) -> FindingRecord {
        FindingRecord {
            at: NOW.into(),
            kernel_id: kernel_id.into(),
            msg_id: "m".into(),
            action: "block".into(),
            category: Some("mining".into()),
            shadow: false,
            verdict: r#"{"action":"block","findings":[{"rule":"mining.xmrig","matched":"xmrig"}]}"#
                .into(),
        }
    }

    /// A store with users alice and bob, admin carol, and one finding each for alice and bob,
    /// inserted through their scoped handles as the policy gate does. Returns the finding ids.
    fn store_with_findings() -> (Store, i64, i64) {
        let store = Store::open_in_memory().unwrap();
        for (name, role) in [
            ("alice", Role::User),
            ("bob", Role::User),
            ("carol", Role::Admin),
        ] {
            store
                .user_add(name, "correct horse", role, "free", NOW)
                .unwrap();
        }
        store
            .for_owner("alice")
            .insert_finding(&finding("ka"))
            .unwrap();
        store
            .for_owner("bob")
            .insert_finding(&finding("kb"))
            .unwrap();
        let id_of = |owner: &str| store.finding_list(Some(owner), 10).unwrap()[0].id;
        let (alice, bob) = (id_of("alice"), id_of("bob"));
        (store, alice, bob)
    }

    #[test]
    fn findings_are_listed_per_owner_or_all_and_read_by_id() {
        let (store, alice_finding, bob_finding) = store_with_findings();
        store
            .for_owner("alice")
            .insert_finding(&finding("ka2"))
            .unwrap();
        let alice = store.finding_list(Some("alice"), 10).unwrap();
        let kernels: Vec<&str> = alice.iter().map(|f| f.record.kernel_id.as_str()).collect();
        assert_eq!(kernels, ["ka2", "ka"], "newest first");
        assert!(alice.iter().all(|f| f.owner == "alice"));
        assert_eq!(store.finding_list(None, 10).unwrap().len(), 3);
        assert_eq!(store.finding_list(None, 1).unwrap().len(), 1, "limited");
        assert!(store.finding_list(Some("nobody"), 10).unwrap().is_empty());
        let got = store.finding_get(bob_finding).unwrap().unwrap();
        assert_eq!((got.owner.as_str(), got.record), ("bob", finding("kb")));
        assert!(store.finding_get(9999).unwrap().is_none());
        // A scoped handle reads only its own owner's, whatever it asks for.
        let scoped = store.for_owner("alice");
        assert_eq!(scoped.finding_list(None, 10).unwrap().len(), 2);
        assert!(scoped.finding_list(Some("bob"), 10).unwrap().is_empty());
        assert!(scoped.finding_get(bob_finding).unwrap().is_none());
        assert!(scoped.finding_get(alice_finding).unwrap().is_some());
    }

    #[test]
    fn a_user_appeals_only_their_own_finding_once_at_a_time() {
        let (store, alice_finding, bob_finding) = store_with_findings();
        let appeal = store
            .appeal_create("alice", Some(alice_finding), "  it was a test  ", NOW)
            .unwrap();
        assert_eq!(appeal.status, AppealStatus::Open);
        assert_eq!(appeal.message, "it was a test");
        assert_eq!(store.appeal_get(appeal.id).unwrap().unwrap(), appeal);
        assert!(matches!(
            store.appeal_create("alice", Some(bob_finding), "mine?", NOW),
            Err(StoreError::NoSuchFinding(id)) if id == bob_finding
        ));
        assert!(matches!(
            store.appeal_create("alice", Some(9999), "what?", NOW),
            Err(StoreError::NoSuchFinding(9999))
        ));
        assert!(matches!(
            store.appeal_create("alice", Some(alice_finding), "again", NOW),
            Err(StoreError::AppealOpen { what: "finding", id }) if id == appeal.id
        ));
        assert!(matches!(
            store.appeal_create("nobody", Some(alice_finding), "hi", NOW),
            Err(StoreError::NoSuchUser(_))
        ));
        // Once decided, the finding may be appealed again.
        store
            .appeal_decide(appeal.id, "carol", false, "no", LATER)
            .unwrap();
        assert!(store
            .appeal_create("alice", Some(alice_finding), "new evidence", LATER)
            .is_ok());
    }

    #[test]
    fn appeal_messages_must_have_1_to_4000_characters() {
        let (store, alice_finding, _) = store_with_findings();
        for message in ["", "   \n", &"é".repeat(APPEAL_MESSAGE_CHARS_MAX + 1)] {
            assert!(matches!(
                store.appeal_create("alice", Some(alice_finding), message, NOW),
                Err(StoreError::InvalidAppealMessage { max_chars: 4000 })
            ));
        }
        let longest = "é".repeat(APPEAL_MESSAGE_CHARS_MAX);
        let appeal = store
            .appeal_create("alice", Some(alice_finding), &longest, NOW)
            .unwrap();
        assert_eq!(appeal.message, longest);
        assert!(matches!(
            store.appeal_create("alice", Some(alice_finding), "x", "yesterday"),
            Err(StoreError::InvalidTime { .. })
        ));
    }

    #[test]
    fn a_restriction_is_appealable_only_while_it_lasts() {
        let (store, _, _) = store_with_findings();
        assert!(matches!(
            store.appeal_create("alice", None, "why?", NOW),
            Err(StoreError::NothingToAppeal { .. })
        ));
        store
            .user_restrict("alice", Some(LATER), Some("mining"))
            .unwrap();
        assert!(matches!(
            store.appeal_create("alice", None, "too late", LATER),
            Err(StoreError::NothingToAppeal { .. })
        ));
        let appeal = store.appeal_create("alice", None, "why?", NOW).unwrap();
        assert_eq!(appeal.finding_id, None);
        assert!(matches!(
            store.appeal_create("alice", None, "again", NOW),
            Err(StoreError::AppealOpen {
                what: "restriction",
                ..
            })
        ));
    }

    #[test]
    fn appeals_are_listed_by_user_and_status() {
        let (store, alice_finding, bob_finding) = store_with_findings();
        let first = store
            .appeal_create("alice", Some(alice_finding), "a", NOW)
            .unwrap();
        let second = store
            .appeal_create("bob", Some(bob_finding), "b", NOW)
            .unwrap();
        store
            .appeal_decide(first.id, "carol", true, "", LATER)
            .unwrap();
        let ids = |appeals: Vec<AppealRecord>| appeals.iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.appeal_list(None, None).unwrap()),
            [second.id, first.id]
        );
        assert_eq!(
            ids(store.appeal_list(Some("alice"), None).unwrap()),
            [first.id]
        );
        assert_eq!(
            ids(store.appeal_list(None, Some("open")).unwrap()),
            [second.id]
        );
        assert!(store
            .appeal_list(Some("alice"), Some("denied"))
            .unwrap()
            .is_empty());
        assert!(matches!(
            store.appeal_list(None, Some("pending")),
            Err(StoreError::InvalidAppealStatus(_))
        ));
    }

    #[test]
    fn only_an_admin_decides_and_only_once() {
        let (store, alice_finding, _) = store_with_findings();
        let appeal = store
            .appeal_create("alice", Some(alice_finding), "a", NOW)
            .unwrap();
        for who in ["alice", "bob", "nobody"] {
            assert!(matches!(
                store.appeal_decide(appeal.id, who, true, "", LATER),
                Err(StoreError::NotAdmin(_))
            ));
        }
        let decision = store
            .appeal_decide(appeal.id, "carol", false, " not a mistake ", LATER)
            .unwrap();
        assert!(!decision.restriction_lifted);
        assert_eq!(decision.appeal.status, AppealStatus::Denied);
        assert_eq!(decision.appeal.decided_by.as_deref(), Some("carol"));
        assert_eq!(
            decision.appeal.decision_note.as_deref(),
            Some("not a mistake")
        );
        assert_eq!(decision.appeal.decided_at.as_deref(), Some(LATER));
        assert_eq!(
            store.appeal_get(appeal.id).unwrap().unwrap(),
            decision.appeal
        );
        assert!(matches!(
            store.appeal_decide(appeal.id, "carol", true, "", LATER),
            Err(StoreError::AppealDecided { status, .. }) if status == "denied"
        ));
        assert!(matches!(
            store.appeal_decide(9999, "carol", true, "", LATER),
            Err(StoreError::NoSuchAppeal(9999))
        ));
        let other = store
            .appeal_create("alice", Some(alice_finding), "b", LATER)
            .unwrap();
        assert!(matches!(
            store.appeal_decide(
                other.id,
                "carol",
                true,
                &"n".repeat(DECISION_NOTE_CHARS_MAX + 1),
                LATER
            ),
            Err(StoreError::InvalidDecisionNote { .. })
        ));
        let decision = store
            .appeal_decide(other.id, "carol", true, "", LATER)
            .unwrap();
        assert_eq!(decision.appeal.decision_note, None);
    }

    #[test]
    fn granting_a_restriction_appeal_lifts_the_restriction() {
        let (store, alice_finding, _) = store_with_findings();
        store
            .user_restrict("alice", Some("2026-02-01T00:00:00Z"), Some("mining"))
            .unwrap();
        // Granting an appeal of a finding leaves the restriction alone.
        let of_finding = store
            .appeal_create("alice", Some(alice_finding), "a", NOW)
            .unwrap();
        let decision = store
            .appeal_decide(of_finding.id, "carol", true, "", LATER)
            .unwrap();
        assert!(!decision.restriction_lifted);
        assert!(store
            .user_get("alice")
            .unwrap()
            .unwrap()
            .restricted_until
            .is_some());
        // Denying a restriction appeal leaves it too; granting the next one lifts it.
        let denied = store.appeal_create("alice", None, "a", NOW).unwrap();
        store
            .appeal_decide(denied.id, "carol", false, "", LATER)
            .unwrap();
        assert!(store
            .user_get("alice")
            .unwrap()
            .unwrap()
            .is_restricted_at(LATER)
            .unwrap());
        let granted = store.appeal_create("alice", None, "b", LATER).unwrap();
        let decision = store
            .appeal_decide(granted.id, "carol", true, "sorry", LATER)
            .unwrap();
        assert!(decision.restriction_lifted);
        let alice = store.user_get("alice").unwrap().unwrap();
        assert_eq!(
            (alice.restricted_until, alice.restricted_reason),
            (None, None)
        );
    }

    #[test]
    fn appeals_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let id = {
            let store = Store::open_sqlite(&path).unwrap();
            store
                .user_add("alice", "correct horse", Role::User, "free", NOW)
                .unwrap();
            store
                .user_restrict("alice", Some(LATER), Some("mining"))
                .unwrap();
            store.appeal_create("alice", None, "why?", NOW).unwrap().id
        };
        let store = Store::open_sqlite(&path).unwrap();
        assert_eq!(store.appeal_get(id).unwrap().unwrap().message, "why?");
    }
}
