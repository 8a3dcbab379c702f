//! The audit log: append-only and tamper-evident.
//!
//! Each record carries the hash of the one before it and its own hash, the SHA-256 of an
//! unambiguous encoding of (seq, at, actor, action, subject, detail as canonical JSON,
//! prev_hash). The first record chains from [`AUDIT_GENESIS_HASH`]. SQLite triggers refuse
//! `UPDATE` and `DELETE` on the table, and appends run in one `IMMEDIATE` transaction under the
//! store lock, so two writers (even two processes) never fork the chain. [`Store::audit_verify`]
//! walks the chain and reports the first broken link: an edited field, a missing record, a
//! record out of place.
//!
//! A chain cannot show that records were cut off its end: keep the head that `audit verify`
//! prints somewhere else and compare it later.
//!
//! Actions are stable strings, the set in [`AUDIT_ACTIONS`]:
//!
//! | action | when |
//! | --- | --- |
//! | `login` | a user logged in |
//! | `login_failed` | a login was refused (subject: the name tried) |
//! | `login_failed_summary` | refused logins beyond the server's per-interval records, summed (detail: count, reasons, a sample of names, the interval) |
//! | `logout` | a user logged out |
//! | `kernel_start` | a kernel started (subject: kernel id) |
//! | `kernel_stop` | a kernel stopped or died |
//! | `finding` | the policy found something (detail: the verdict) |
//! | `action` | the policy acted: warn, interrupt, stop, restrict |
//! | `user_add`, `user_remove`, `user_set_tier`, `user_set_role`, `user_set_password` | an admin changed an account |
//! | `restriction` | an account was restricted or the restriction lifted |
//! | `appeal` | a user appealed a finding or restriction |
//! | `appeal_decision` | an admin decided an appeal |
//! | `token_create`, `token_revoke` | an API token was created or revoked |

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::users::parse_time;
use crate::{Store, StoreError};

/// The `prev_hash` of the first record.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Every action a record may name.
pub const AUDIT_ACTIONS: &[&str] = &[
    "login",
    "login_failed",
    "login_failed_summary",
    "logout",
    "kernel_start",
    "kernel_stop",
    "finding",
    "action",
    "user_add",
    "user_remove",
    "user_set_tier",
    "user_set_role",
    "user_set_password",
    "restriction",
    "appeal",
    "appeal_decision",
    "token_create",
    "token_revoke",
];

/// Tag that starts every hashed encoding, so a record hash is never mistaken for another hash.
const HASH_DOMAIN: &[u8] = b"commonlab-audit-v1\n";

/// Records read at once while verifying; the lock is released between pages.
const VERIFY_PAGE_RECORDS: usize = 1000;

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// 1, 2, 3, ... with no gaps.
    pub seq: i64,
    /// RFC 3339 time of the event.
    pub at: String,
    /// Who acted: a user name, `cli`, `server`, or none.
    pub actor: Option<String>,
    /// One of [`AUDIT_ACTIONS`].
    pub action: String,
    /// What it was done to: a user name, a kernel id.
    pub subject: Option<String>,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    pub seq: i64,
    pub reason: String,
}

/// What [`Store::audit_verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerify {
    /// Records checked (up to and including the first bad one).
    pub records: u64,
    pub first_bad: Option<AuditBreak>,
    /// Seq and hash of the last record checked; 0 and the genesis hash for an empty log.
    pub head_seq: i64,
    pub head_hash: String,
}

/// A record as stored, detail still text (a tampered one may not parse).
struct StoredRecord {
    seq: i64,
    at: String,
    actor: Option<String>,
    action: String,
    subject: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl StoredRecord {
    fn parse(self) -> Result<AuditRecord, StoreError> {
        let detail =
            serde_json::from_str(&self.detail).map_err(|error| StoreError::AuditDetail {
                seq: self.seq,
                reason: error.to_string(),
            })?;
        Ok(AuditRecord {
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            detail,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// JSON with object keys sorted (by bytes), no whitespace, and serde_json's number and string
/// forms: the same value always gives the same text.
pub(crate) fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.push_str(&value.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (idx, (key, item)) in entries.into_iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn put_optional(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => buf.push(0),
        Some(value) => {
            buf.push(1);
            put_bytes(buf, value.as_bytes());
        }
    }
}

/// The record hash: SHA-256 over the domain tag, then seq as 8 big-endian bytes, then each field
/// length-prefixed (8 big-endian bytes), optional fields after a 0/1 presence byte.
fn record_hash(
    seq: i64,
    at: &str,
    actor: Option<&str>,
    action: &str,
    subject: Option<&str>,
    detail_canonical: &str,
    prev_hash: &str,
) -> String {
    let mut buf = Vec::with_capacity(256 + detail_canonical.len());
    buf.extend_from_slice(HASH_DOMAIN);
    buf.extend_from_slice(&seq.to_be_bytes());
    put_bytes(&mut buf, at.as_bytes());
    put_optional(&mut buf, actor);
    put_bytes(&mut buf, action.as_bytes());
    put_optional(&mut buf, subject);
    put_bytes(&mut buf, detail_canonical.as_bytes());
    put_bytes(&mut buf, prev_hash.as_bytes());
    hex::encode(Sha256::digest(&buf))
}

fn stored_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        seq: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        subject: row.get(4)?,
        detail: row.get(5)?,
        prev_hash: row.get(6)?,
        hash: row.get(7)?,
    })
}

/// The first problem with `record`, expected to be number `expected_seq` after `prev_hash`.
fn check_link(record: &StoredRecord, expected_seq: i64, prev_hash: &str) -> Option<AuditBreak> {
    if record.seq != expected_seq {
        let reason = if record.seq > expected_seq {
            format!(
                "record {expected_seq} is missing: the next record is {}",
                record.seq
            )
        } else {
            format!("record {} is out of order", record.seq)
        };
        return Some(AuditBreak {
            seq: expected_seq,
            reason,
        });
    }
    if record.prev_hash != prev_hash {
        return Some(AuditBreak {
            seq: record.seq,
            reason: format!(
                "its prev_hash does not match the hash of record {}: a record was inserted, removed or rewritten",
                record.seq - 1
            ),
        });
    }
    let detail = match serde_json::from_str::<serde_json::Value>(&record.detail) {
        Ok(detail) => detail,
        Err(error) => {
            return Some(AuditBreak {
                seq: record.seq,
                reason: format!("its detail is not JSON: {error}"),
            })
        }
    };
    let hash = record_hash(
        record.seq,
        &record.at,
        record.actor.as_deref(),
        &record.action,
        record.subject.as_deref(),
        &canonical_json(&detail),
        &record.prev_hash,
    );
    if hash != record.hash {
        return Some(AuditBreak {
            seq: record.seq,
            reason: "its contents do not match its hash: the record was edited".into(),
        });
    }
    None
}

impl Store {
    /// Appends one record and returns it with its hash. `at` is RFC 3339; `action` one of
    /// [`AUDIT_ACTIONS`].
    pub fn audit_append(
        &self,
        at: &str,
        actor: Option<&str>,
        action: &str,
        subject: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<AuditRecord, StoreError> {
        parse_time(at)?;
        if !AUDIT_ACTIONS.contains(&action) {
            return Err(StoreError::UnknownAuditAction(action.into()));
        }
        let detail_canonical = canonical_json(detail);
        self.with_tx(|tx| {
            let (last_seq, prev_hash) = tx
                .query_row(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()?
                .unwrap_or((0, AUDIT_GENESIS_HASH.into()));
            let seq = last_seq + 1;
            let hash = record_hash(seq, at, actor, action, subject, &detail_canonical, &prev_hash);
            tx.execute(
                "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![seq, at, actor, action, subject, detail_canonical, prev_hash, hash],
            )?;
            Ok(AuditRecord {
                seq,
                at: at.into(),
                actor: actor.map(Into::into),
                action: action.into(),
                subject: subject.map(Into::into),
                detail: detail.clone(),
                prev_hash,
                hash,
            })
        })
    }

    fn audit_stored(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_seq, limit], stored_from_row)?;
            rows.collect()
        })
    }

    /// Up to `limit` records after `after_seq`, oldest first.
    pub fn audit_list(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_stored(after_seq, limit)?
            .into_iter()
            .map(StoredRecord::parse)
            .collect()
    }

    /// Seq of the last record, 0 for an empty log.
    pub fn audit_last_seq(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| {
                row.get(0)
            })
        })
    }

    /// Walks the whole chain, a page at a time, and reports the first broken link.
    pub fn audit_verify(&self) -> Result<AuditVerify, StoreError> {
        let mut verify = AuditVerify {
            records: 0,
            first_bad: None,
            head_seq: 0,
            head_hash: AUDIT_GENESIS_HASH.into(),
        };
        // Rows are paged by their stored seq, which may have gaps; the expected seq is counted.
        let mut after_seq = 0;
        loop {
            let page = self.audit_stored(after_seq, VERIFY_PAGE_RECORDS)?;
            let Some(last) = page.last() else {
                return Ok(verify);
            };
            after_seq = last.seq;
            for record in page {
                verify.records += 1;
                if let Some(first_bad) = check_link(&record, verify.head_seq + 1, &verify.head_hash)
                {
                    verify.first_bad = Some(first_bad);
                    return Ok(verify);
                }
                verify.head_seq = record.seq;
                verify.head_hash = record.hash;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: &str = "2026-01-01T00:00:00Z";

    fn store_with_records(n: i64) -> Store {
        let store = Store::open_in_memory().unwrap();
        for idx in 0..n {
            store
                .audit_append(
                    AT,
                    Some("cli"),
                    "user_add",
                    Some(&format!("user{idx}")),
                    &json!({"tier": "free", "idx": idx}),
                )
                .unwrap();
        }
        store
    }

    /// Runs raw SQL with the append-only triggers dropped, as someone with the file would.
    fn tamper(store: &Store, sql: &str) {
        store
            .with(|c| {
                c.execute_batch(&format!(
                    "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql}"
                ))
            })
            .unwrap();
    }

    #[test]
    fn appended_records_chain_from_genesis_and_verify() {
        let store = store_with_records(3);
        let records = store.audit_list(0, 10).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[0].prev_hash, AUDIT_GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[2].prev_hash, records[1].hash);
        assert_eq!(records[2].detail, json!({"idx": 2, "tier": "free"}));
        let verify = store.audit_verify().unwrap();
        assert_eq!(verify.records, 3);
        assert_eq!(verify.first_bad, None);
        assert_eq!(
            (verify.head_seq, verify.head_hash.as_str()),
            (3, records[2].hash.as_str())
        );
        assert_eq!(store.audit_last_seq().unwrap(), 3);
    }

    #[test]
    fn an_empty_log_verifies() {
        let store = Store::open_in_memory().unwrap();
        let verify = store.audit_verify().unwrap();
        assert_eq!(
            (verify.records, verify.first_bad, verify.head_seq),
            (0, None, 0)
        );
    }

    #[test]
    fn verify_pages_through_long_logs() {
        let store = store_with_records(VERIFY_PAGE_RECORDS as i64 + 5);
        let verify = store.audit_verify().unwrap();
        assert_eq!(verify.records, VERIFY_PAGE_RECORDS as u64 + 5);
        assert_eq!(verify.first_bad, None);
    }

    #[test]
    fn list_pages_by_seq() {
        let store = store_with_records(5);
        let page = store.audit_list(2, 2).unwrap();
        assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(store.audit_list(5, 10).unwrap().is_empty());
    }

    #[test]
    fn triggers_refuse_update_and_delete() {
        let store = store_with_records(2);
        let err = store
            .with(|c| c.execute("UPDATE audit SET actor = 'eve' WHERE seq = 1", []))
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = store
            .with(|c| c.execute("DELETE FROM audit WHERE seq = 2", []))
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(store.audit_verify().unwrap().first_bad, None);
    }

    #[test]
    fn an_edited_field_is_found_at_its_record() {
        for sql in [
            "UPDATE audit SET actor = 'eve' WHERE seq = 2",
            "UPDATE audit SET actor = NULL WHERE seq = 2",
            "UPDATE audit SET at = '2026-01-02T00:00:00Z' WHERE seq = 2",
            "UPDATE audit SET action = 'user_remove' WHERE seq = 2",
            "UPDATE audit SET subject = 'user9' WHERE seq = 2",
            "UPDATE audit SET detail = '{\"idx\":1,\"tier\":\"pro\"}' WHERE seq = 2",
        ] {
            let store = store_with_records(3);
            tamper(&store, sql);
            let verify = store.audit_verify().unwrap();
            let first_bad = verify.first_bad.expect(sql);
            assert_eq!(first_bad.seq, 2, "{sql}");
            assert!(
                first_bad.reason.contains("edited"),
                "{sql}: {}",
                first_bad.reason
            );
            assert_eq!(verify.records, 2);
        }
    }

    #[test]
    fn detail_that_is_not_json_is_a_break_not_an_error() {
        let store = store_with_records(3);
        tamper(&store, "UPDATE audit SET detail = 'nope' WHERE seq = 3");
        let first_bad = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(first_bad.seq, 3);
        assert!(
            first_bad.reason.contains("not JSON"),
            "{}",
            first_bad.reason
        );
        assert!(matches!(
            store.audit_list(0, 10).unwrap_err(),
            StoreError::AuditDetail { seq: 3, .. }
        ));
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let store = store_with_records(3);
        let second = &store.audit_list(1, 1).unwrap()[0];
        let forged = record_hash(
            2,
            AT,
            Some("eve"),
            "user_add",
            Some("user1"),
            "{}",
            &second.prev_hash,
        );
        tamper(
            &store,
            &format!(
                "UPDATE audit SET actor = 'eve', detail = '{{}}', hash = '{forged}' WHERE seq = 2"
            ),
        );
        let first_bad = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(first_bad.seq, 3);
        assert!(
            first_bad.reason.contains("prev_hash"),
            "{}",
            first_bad.reason
        );
    }

    #[test]
    fn a_deleted_record_is_found_as_a_gap() {
        let store = store_with_records(4);
        tamper(&store, "DELETE FROM audit WHERE seq = 2");
        let first_bad = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(first_bad.seq, 2);
        assert!(first_bad.reason.contains("missing"), "{}", first_bad.reason);
        let store = store_with_records(4);
        tamper(&store, "DELETE FROM audit WHERE seq = 1");
        assert_eq!(store.audit_verify().unwrap().first_bad.unwrap().seq, 1);
    }

    #[test]
    fn reordered_records_are_found() {
        let store = store_with_records(3);
        // Swap records 2 and 3 wholesale, hashes included.
        tamper(
            &store,
            "UPDATE audit SET seq = -2 WHERE seq = 2;
             UPDATE audit SET seq = 2 WHERE seq = 3;
             UPDATE audit SET seq = 3 WHERE seq = -2;",
        );
        let first_bad = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(first_bad.seq, 2);
    }

    #[test]
    fn appends_after_a_gap_do_not_hide_it() {
        let store = store_with_records(3);
        tamper(&store, "DELETE FROM audit WHERE seq = 3");
        store
            .audit_append(AT, None, "login", Some("ada"), &json!({}))
            .unwrap();
        // Truncating the tail is invisible to the chain alone; the next append simply follows.
        assert_eq!(store.audit_verify().unwrap().first_bad, None);
        tamper(&store, "DELETE FROM audit WHERE seq = 2");
        assert_eq!(store.audit_verify().unwrap().first_bad.unwrap().seq, 2);
    }

    #[test]
    fn append_rejects_unknown_actions_and_bad_times() {
        let store = Store::open_in_memory().unwrap();
        assert!(matches!(
            store
                .audit_append(AT, None, "launch_missiles", None, &json!({}))
                .unwrap_err(),
            StoreError::UnknownAuditAction(_)
        ));
        assert!(matches!(
            store
                .audit_append("yesterday", None, "login", None, &json!({}))
                .unwrap_err(),
            StoreError::InvalidTime { .. }
        ));
        for action in AUDIT_ACTIONS {
            store
                .audit_append(AT, None, action, None, &json!(null))
                .unwrap();
        }
        assert_eq!(
            store.audit_verify().unwrap().records,
            AUDIT_ACTIONS.len() as u64
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"z": null, "a": true}], "a": "x\"y" }"#)
                .unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":"x\"y","b":[1,2.5,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn the_encoding_keeps_fields_apart() {
        let base = record_hash(1, AT, Some("ab"), "login", None, "{}", AUDIT_GENESIS_HASH);
        assert_ne!(
            base,
            record_hash(1, AT, Some("a"), "blogin", None, "{}", AUDIT_GENESIS_HASH)
        );
        assert_ne!(
            record_hash(1, AT, None, "login", Some("x"), "{}", AUDIT_GENESIS_HASH),
            record_hash(1, AT, Some("x"), "login", None, "{}", AUDIT_GENESIS_HASH)
        );
        assert_ne!(
            record_hash(1, AT, Some(""), "login", None, "{}", AUDIT_GENESIS_HASH),
            record_hash(1, AT, None, "login", None, "{}", AUDIT_GENESIS_HASH)
        );
    }
}
