//! `commonlab user`: add, remove, list and re-tier accounts and issue API tokens, in the same
//! database `commonlab serve` uses. Every change is recorded in the audit log with actor `cli`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use commonlab_store::{Role, Store, UserRecord, PASSWORD_CHARS_MIN};
use serde_json::json;

use crate::config::{self, Config};
use crate::serve;

/// The actor named in audit records of changes made with the command line.
pub(crate) const CLI_ACTOR: &str = "cli";

/// Where to find the database: the same resolution `commonlab serve` uses.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "COMMONLAB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where the database lives [config: server.data_dir].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// An opened store with the configuration it was found through.
pub(crate) struct OpenedStore {
    pub(crate) config: Config,
    pub(crate) store: Store,
}

impl StoreArgs {
    /// Opens the server's database. `create`: make the data directory and database if missing
    /// (adding the first user before the server ever ran); otherwise a missing one is an error,
    /// so a mistyped data directory is not read as an empty one.
    pub(crate) fn open(&self, create: bool) -> anyhow::Result<OpenedStore> {
        let mut config = config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = Some(dir.clone());
        }
        let data_dir = serve::data_dir(&config);
        let path = serve::database_path(&data_dir);
        if create {
            std::fs::create_dir_all(&data_dir).with_context(|| {
                format!("could not create data directory {}", data_dir.display())
            })?;
        } else if !path.exists() {
            anyhow::bail!(
                "no database at {}: check --data-dir or server.data_dir (the server and `user add` create it)",
                path.display()
            );
        }
        let store = Store::open_sqlite(&path)
            .with_context(|| format!("could not open the database at {}", path.display()))?
            .with_uid_range(config.accounts.uid_range());
        Ok(OpenedStore { config, store })
    }
}

/// Flags of `commonlab user`.
#[derive(Debug, clap::Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input, one line.
    Add {
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// The user's tier [default: config server.user_tier].
        #[arg(long)]
        tier: Option<String>,
    },
    /// Remove a user with their API tokens and login sessions (their files stay).
    Remove { name: String },
    /// List users.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move a user to another tier.
    SetTier { name: String, tier: String },
    /// Create an API token for a user and print it; it is shown this once only.
    Token {
        name: String,
        /// A label to tell the token apart in listings.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

/// The current time as RFC 3339, for records.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reads one line from standard input as a password, refusing an empty or short one.
fn read_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {name} (one line; it is echoed): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&line);
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input: give one line, e.g. `printf '%s\\n' \"$PASSWORD\" | commonlab user add {name}`"
        );
    }
    if password.chars().count() < PASSWORD_CHARS_MIN {
        anyhow::bail!("password is too short: use at least {PASSWORD_CHARS_MIN} characters");
    }
    Ok(password.to_owned())
}

fn restricted(user: &UserRecord) -> String {
    match (&user.restricted_until, &user.restricted_reason) {
        (Some(until), Some(reason)) => format!("until {until} ({reason})"),
        (Some(until), None) => format!("until {until}"),
        _ => "-".into(),
    }
}

fn user_json(user: &UserRecord) -> serde_json::Value {
    json!({
        "id": user.id,
        "name": user.name,
        "role": user.role.as_str(),
        "tier": user.tier,
        "uid": user.uid,
        "created_at": user.created_at,
        "restricted_until": user.restricted_until,
        "restricted_reason": user.restricted_reason,
    })
}

/// Users as an aligned text table.
fn user_table(users: &[UserRecord]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "ROLE".into(),
        "TIER".into(),
        "UID".into(),
        "CREATED".into(),
        "RESTRICTED".into(),
    ]];
    rows.extend(users.iter().map(|user| {
        [
            user.name.clone(),
            user.role.as_str().into(),
            user.tier.clone(),
            user.uid.to_string(),
            user.created_at.clone(),
            restricted(user),
        ]
    }));
    crate::audit::table(&rows)
}

pub(crate) fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let create = matches!(args.command, UserCommand::Add { .. });
    let OpenedStore { config, store } = args.store.open(create)?;
    match args.command {
        UserCommand::Add { name, admin, tier } => {
            commonlab_store::validate_user_name(&name)?;
            if store.user_get(&name)?.is_some() {
                anyhow::bail!("a user named `{name}` already exists");
            }
            let tier = tier.unwrap_or_else(|| config.server.user_tier.clone());
            let role = if admin { Role::Admin } else { Role::User };
            let password = read_password(&name)?;
            let now = now();
            let user = store.user_add(&name, &password, role, &tier, &now)?;
            store.audit_append(
                &now,
                Some(CLI_ACTOR),
                "user_add",
                Some(&user.name),
                &json!({"role": user.role.as_str(), "tier": user.tier, "uid": user.uid}),
            )?;
            println!(
                "added user {} (role {}, tier {}, uid {})",
                user.name, user.role, user.tier, user.uid
            );
        }
        UserCommand::Remove { name } => {
            if !store.user_remove(&name)? {
                anyhow::bail!("no user named `{name}`");
            }
            store.audit_append(
                &now(),
                Some(CLI_ACTOR),
                "user_remove",
                Some(&name),
                &json!({}),
            )?;
            println!("removed user {name}");
        }
        UserCommand::List { json } => {
            let users = store.user_list()?;
            if json {
                let users: Vec<_> = users.iter().map(user_json).collect();
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                print!("{}", user_table(&users));
            }
        }
        UserCommand::SetTier { name, tier } => {
            let Some(user) = store.user_get(&name)? else {
                anyhow::bail!("no user named `{name}`");
            };
            // The server configuration has no list of tiers yet, so any well-formed name is
            // accepted; the store checks its form.
            if !store.user_set_tier(&name, &tier)? {
                anyhow::bail!("no user named `{name}`");
            }
            store.audit_append(
                &now(),
                Some(CLI_ACTOR),
                "user_set_tier",
                Some(&name),
                &json!({"from": user.tier, "to": tier}),
            )?;
            println!("user {name}: tier {} -> {tier}", user.tier);
        }
        UserCommand::Token { name, label } => {
            let now = now();
            let token = store.api_token_create(&name, &label, &now)?;
            store.audit_append(
                &now,
                Some(CLI_ACTOR),
                "token_create",
                Some(&name),
                &json!({"label": label}),
            )?;
            eprintln!("API token for {name} (label {label}); it is not shown again:");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
