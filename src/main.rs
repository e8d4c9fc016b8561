//! `imds-sweep`: parses the command line, runs the sweep, and turns the result into an exit
//! code. All the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use imds_sweep::cli::Cli;
use imds_sweep::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    imds_sweep::logging::init(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(ExitStatus::Internal.code());
        }
    };
    let status = match runtime.block_on(imds_sweep::run(cli)) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_status()
        }
    };
    // A prompt interrupted by Ctrl-C leaves a blocking stdin read behind; do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(status.code())
}
