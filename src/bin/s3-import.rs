//! The `s3-import` command line: the subcommands and their dispatch. Each subcommand's
//! arguments (`cli::args`) and what it does (`cli::local`, `cli::importer`) live in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use s3_import::cli::args::*;
use s3_import::cli::importer::{run_importer, run_setup, ImporterCommand};
use s3_import::cli::local::{run_convert, run_emulator, run_preview, run_send, run_validate};

#[derive(Parser)]
#[command(
    name = "s3-import",
    version,
    about = "Self-hosted Amplitude S3 Import: validate, preview and run converter files; deliver to Amplitude or a local emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert one object's content: one JSON line per record outcome on stdout, a summary on stderr
    Convert(ConvertArgs),
    /// Show the first records beside what they convert to (the "Data Preview")
    Preview(PreviewArgs),
    /// Load a converter file and report every problem with its JSON path
    Validate(ValidateArgs),
    /// Run a local Amplitude-compatible ingestion endpoint (dry runs, demo, tests)
    Emulator(EmulatorArgs),
    /// Convert a local file and deliver it to Amplitude or a compatible endpoint
    Send(SendArgs),
    /// Import one S3 object now (claims, dedupe and reports as the Lambda function does)
    Import(ImportArgs),
    /// List a bucket prefix and import (or queue) every object without a final claim
    Scan(ScanArgs),
    /// Poll an SQS queue and import what it announces, like the Lambda trigger
    Worker(WorkerArgs),
    /// List the claims of this source: state, counts, report location or failure reason
    Status(StatusArgs),
    /// Import a FAILED object again, or every one (--failed), after fixing what failed them
    Retry(RetryArgs),
    /// Check the deployed settings: bucket, converter, reports, tables, queue, endpoint and key
    Check(CheckArgs),
    /// Create the tables, bucket, queue and notification (local stack or a dev account)
    Setup(SetupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Preview(args) => run_preview(args),
        Command::Validate(args) => run_validate(args),
        Command::Emulator(args) => run_emulator(args),
        Command::Send(args) => run_send(args),
        Command::Import(args) => run_importer(ImporterCommand::Import(args)),
        Command::Scan(args) => run_importer(ImporterCommand::Scan(args)),
        Command::Worker(args) => run_importer(ImporterCommand::Worker(args)),
        Command::Status(args) => run_importer(ImporterCommand::Status(args)),
        Command::Retry(args) => run_importer(ImporterCommand::Retry(args)),
        Command::Check(args) => run_importer(ImporterCommand::Check(args)),
        Command::Setup(args) => run_setup(args),
    }
}
