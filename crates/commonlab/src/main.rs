//! The `commonlab` binary: command-line parsing, configuration and wiring. Nothing else lives
//! here; each command calls into the crate that does the work.

mod accounts;
mod audit;
mod config;
mod serve;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Commonlab: a self-hosted notebook platform for shared GPUs.
///
/// It speaks the Jupyter Server API, so JupyterLab, VS Code and other Jupyter clients work
/// against it unchanged.
#[derive(Debug, Parser)]
#[command(name = "commonlab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Scan notebooks and scripts against the usage policy, offline.
    Scan(commonlab_scan::ScanArgs),
    /// Show or evaluate the usage-policy rule packs.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Replay a GPU workload through the allocator with a virtual clock and compare policies.
    Sim(commonlab_sim::SimArgs),
    /// Manage accounts: add, remove, list, set a tier, issue API tokens.
    User(users::UserArgs),
    /// Verify or list the tamper-evident audit log.
    Audit(audit::AuditArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// List the rule packs and rules in force, with operator overrides applied.
    List(commonlab_scan::PolicyListArgs),
    /// Measure precision and recall over a labelled corpus.
    Eval(commonlab_scan::EvalArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; exits non-zero with the problem if it is invalid.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Print the effective configuration (file, environment and defaults), token redacted.
    Show {
        /// The TOML file to read, if any.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // The sandbox launcher is started by the sandbox backend (as `commonlab sandbox-exec …`),
    // not by people, so it stays out of the command list.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|arg| arg == "sandbox-exec") {
        let code = commonlab_runtime::sandbox_exec_main(args.collect());
        return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(ConfigCommand::Check { file }) => {
            config::load(Some(&file), std::env::vars())
                .and_then(|config| serve::load_policy(&config).map(|_| config))
                .map(|_| {
                    #[allow(clippy::print_stdout)]
                    {
                        println!("{}: ok", file.display());
                    }
                    ExitCode::SUCCESS
                })
        }
        Command::Scan(args) => commonlab_scan::run_scan(&args),
        Command::Policy(PolicyCommand::List(args)) => commonlab_scan::run_policy_list(&args),
        Command::Policy(PolicyCommand::Eval(args)) => commonlab_scan::run_eval(&args),
        Command::Sim(args) => commonlab_sim::run_sim(&args),
        Command::User(args) => users::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Config(ConfigCommand::Show { file }) => {
            config::load(file.as_deref(), std::env::vars()).map(|mut config| {
                if !config.server.token.is_empty() {
                    config.server.token = "<redacted>".into();
                }
                #[allow(clippy::print_stdout)]
                {
                    print!(
                        "{}",
                        toml::to_string_pretty(&config).expect("config serializes")
                    );
                }
                ExitCode::SUCCESS
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("commonlab: error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}
