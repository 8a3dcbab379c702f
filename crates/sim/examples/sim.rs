//! `cargo run --release -p commonlab-sim --example sim -- [ARGS]`: the simulator without the
//! `commonlab` binary, taking the same arguments as `commonlab sim`.

use std::process::ExitCode;

use clap::Parser;
use commonlab_sim::{run_sim, SimArgs};

#[derive(Parser)]
#[command(
    name = "sim",
    about = "Replay a GPU workload under each allocation policy"
)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_sim(&cli.args) {
        Ok(code) => code,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
