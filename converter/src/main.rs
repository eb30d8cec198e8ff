//! The `fairy2i` command line tool: `convert`, `quantize`, `inspect`.
#![forbid(unsafe_code)]

mod arch;
mod cli;
mod cmd;
mod encode;
mod error;
mod hf;
mod imatrix;
mod plan;
mod recipe;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        cli::Command::Convert(a) => cmd::convert::run(a),
        cli::Command::Quantize(a) => cmd::quantize::run(a),
        cli::Command::Inspect(a) => cmd::inspect::run(a),
        cli::Command::GgufToHf(a) => cmd::gguf_to_hf::run(a),
        cli::Command::BenchConvert(a) => cmd::bench::run(a),
    };
    match result {
        // The reader of a pipe went away (`fairy2i inspect FILE | head`): as for any filter, not
        // an error.
        Ok(()) | Err(error::Error::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            cmd::print_err(&format!("fairy2i: {e}\n"));
            ExitCode::from(2)
        }
    }
}
