//! Revocation that takes effect at once. A kernel WebSocket in accounts mode remembers the
//! credential it was opened with (an API token or a login session) and watches its user's
//! revocation signal: when one of the user's tokens is revoked, they log out or the account is
//! removed, every open socket of theirs checks its credential against the store again and
//! closes with 1008 if it no longer holds. Each socket also checks every
//! [`CREDENTIAL_RECHECK_INTERVAL`], for what the signal cannot carry: a login session that
//! expired, an account removed by `commonlab user remove` in another process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commonlab_store::Store;
use tokio::sync::watch;

use crate::auth::AccountSecret;

/// How often an open WebSocket checks its credential when nothing signals a change.
pub(crate) const CREDENTIAL_RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// A revocation signal per user: a generation that moves on each revocation.
#[derive(Default)]
pub(crate) struct Revocations {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Revocations {
    fn subscribe(&self, user: &str) -> watch::Receiver<u64> {
        self.users
            .lock()
            .expect("not poisoned")
            .entry(user.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Tells every open WebSocket of `user` to check its credential now.
    pub(crate) fn revoked(&self, user: &str) {
        if let Some(sender) = self.users.lock().expect("not poisoned").get(user) {
            sender.send_modify(|generation| *generation += 1);
        }
    }

    /// Forgets a removed user's signal, after telling their sockets.
    pub(crate) fn forget(&self, user: &str) {
        self.revoked(user);
        self.users.lock().expect("not poisoned").remove(user);
    }

    /// The watch an upgrade to a WebSocket carries into the user's server.
    pub(crate) fn watch(
        &self,
        store: Arc<Store>,
        owner: &str,
        secret: AccountSecret,
    ) -> CredentialWatch {
        CredentialWatch {
            store,
            owner: owner.to_owned(),
            secret,
            changes: self.subscribe(owner),
        }
    }
}

/// What a WebSocket was opened with, and its user's revocation signal. The hub puts it in the
/// upgrade request's extensions; the kernel channels handler keeps it for the connection.
#[derive(Clone)]
pub(crate) struct CredentialWatch {
    store: Arc<Store>,
    owner: String,
    secret: AccountSecret,
    changes: watch::Receiver<u64>,
}

impl CredentialWatch {
    /// Whether the credential still belongs to the owner now. A store that cannot answer
    /// counts as no: the socket closes, and the client's reconnection is checked afresh.
    fn holds(&self) -> bool {
        let user = match &self.secret {
            AccountSecret::Token(token) => self.store.api_token_lookup(token),
            AccountSecret::Session(id) => self
                .store
                .login_session_lookup(id, &chrono::Utc::now().to_rfc3339()),
        };
        matches!(user, Ok(Some(user)) if user.name == self.owner)
    }

    /// Returns once the credential no longer holds, with the close reason to send.
    pub(crate) async fn revoked(&mut self) -> &'static str {
        let mut signal_open = true;
        loop {
            if signal_open {
                tokio::select! {
                    changed = self.changes.changed() => signal_open = changed.is_ok(),
                    _ = tokio::time::sleep(CREDENTIAL_RECHECK_INTERVAL) => {}
                }
            } else {
                tokio::time::sleep(CREDENTIAL_RECHECK_INTERVAL).await;
            }
            if !self.holds() {
                return match self.secret {
                    AccountSecret::Token(_) => {
                        "credential revoked: the API token this connection was opened with is no longer valid"
                    }
                    AccountSecret::Session(_) => {
                        "credential revoked: the login session this connection was opened with has ended"
                    }
                };
            }
        }
    }
}
