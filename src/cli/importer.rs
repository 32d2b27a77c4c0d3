//! The subcommands that run the importer against AWS (or a local stack): `import`, `scan`,
//! `worker`, `status`, `retry`, `check`, `setup`. Each reads the settings of the environment,
//! gets its pipeline from the one wiring (`aws::pipeline`, with the progress line as its
//! observer when it shows one), and gives the exit status: bad settings or arguments 2,
//! failures at run time 1.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;

use super::args::{CheckArgs, ImportArgs, RetryArgs, ScanArgs, SetupArgs, StatusArgs, WorkerArgs};
use super::local::{exit_bad_input, exit_failure, runtime};
use super::progress::ProgressLine;
use super::{EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::aws::{AwsPipeline, Clients};
use crate::notify::ObjectRef;
use crate::ops::{self, OpError};
use crate::pipeline::ObjectOutcome;
use crate::settings::{self, Settings};
use crate::source::ObjectSource;

/// The subcommands that run the importer.
pub enum ImporterCommand {
    Import(ImportArgs),
    Scan(ScanArgs),
    Worker(WorkerArgs),
    Status(StatusArgs),
    Retry(RetryArgs),
    Check(CheckArgs),
}

/// Logs on standard error, filtered by `S3I_LOG` (default: warnings).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

fn print(text: &str) {
    print!("{text}");
    let _ = io::stdout().flush();
}

fn print_json(value: &serde_json::Value) {
    print(&format!("{value}\n"));
}

/// Runs one importer subcommand with the settings of the environment.
pub fn run_importer(command: ImporterCommand) -> ExitCode {
    init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let clients = Clients::from_env().await;
        let settings = match crate::aws::settings_from_env(&clients).await {
            Ok(s) => s,
            Err(problems) => {
                eprintln!("error: the settings are not usable:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                eprintln!("(the README's \"Settings\" section lists every variable)");
                return ExitCode::from(EXIT_BAD_INPUT as u8);
            }
        };
        let owner = format!("cli-{}", std::process::id());
        match command {
            ImporterCommand::Worker(args) => worker(&clients, settings, args).await,
            ImporterCommand::Check(args) => check(&clients, &settings, args).await,
            ImporterCommand::Import(args) => import(&clients, settings, args, &owner).await,
            ImporterCommand::Retry(args) => retry(&clients, settings, args, &owner).await,
            ImporterCommand::Scan(args) => scan(&clients, settings, args, &owner).await,
            ImporterCommand::Status(args) => {
                let pipeline = crate::aws::pipeline(&clients, settings);
                let shown = if args.summary {
                    pipeline.status_summary().await.map(|s| {
                        if args.json {
                            serde_json::to_string(&s).unwrap_or_default() + "\n"
                        } else {
                            format!("{s}\n")
                        }
                    })
                } else {
                    pipeline.status(args.json).await
                };
                match shown {
                    Ok(text) => {
                        print(&text);
                        ExitCode::SUCCESS
                    }
                    Err(e) => exit_failure(e),
                }
            }
        }
    })
}

/// The pipeline with `progress` as its observer.
fn observed(clients: &Clients, settings: Settings, progress: &ProgressLine) -> AwsPipeline {
    crate::aws::pipeline(clients, settings).observed_by(progress.meter.clone())
}

/// The line's total for one object: its size, asked only when the line is drawn.
async fn show_size(pipeline: &AwsPipeline, progress: &ProgressLine, obj: &ObjectRef) {
    if progress.meter.visible.load(Relaxed) {
        if let Ok(info) = pipeline.source.head(&obj.bucket, &obj.key).await {
            progress.meter.total.store(info.size, Relaxed);
        }
    }
}

async fn check(clients: &Clients, settings: &Settings, args: CheckArgs) -> ExitCode {
    let bucket = args
        .bucket
        .or_else(|| crate::check::source_bucket(settings));
    let role = match &args.role_arn {
        Some(arn) => Some(clients.as_role(arn, args.external_id.as_deref()).await),
        None => None,
    };
    let secret = std::env::var("S3I_API_KEY_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let as_role = role.as_ref().map(|r| crate::check::AsRole {
        clients: r,
        api_key_secret: secret.as_deref(),
    });
    let checks = crate::check::run(clients, settings, bucket.as_deref(), as_role).await;
    if args.json {
        print_json(&crate::check::to_json(&checks));
    } else {
        print(&crate::check::render(&checks));
    }
    exit_if(checks.iter().all(|c| c.ok))
}

async fn import(clients: &Clients, settings: Settings, args: ImportArgs, owner: &str) -> ExitCode {
    let obj = match ops::object_ref(&args.object) {
        Ok(obj) => obj,
        Err(e) => return exit_bad_input(e),
    };
    let progress = ProgressLine::start(true);
    let pipeline = observed(clients, settings, &progress);
    show_size(&pipeline, &progress, &obj).await;
    let outcome = pipeline.import_to_end(&obj, owner).await;
    progress.finish();
    print_outcome(&obj, &outcome, args.json);
    exit_if(ops::outcome_ok(&outcome))
}

async fn retry(clients: &Clients, settings: Settings, args: RetryArgs, owner: &str) -> ExitCode {
    let progress = ProgressLine::start(true);
    let pipeline = observed(clients, settings, &progress);
    let json = args.json;
    let Some(url) = args.object else {
        let prefix = args.prefix.unwrap_or_default();
        let report = |obj: &ObjectRef, outcome: Result<&ObjectOutcome, &OpError>| {
            progress.bar_println(|| match outcome {
                Ok(o) if json => format!("{}\n", ops::outcome_json(obj, o)),
                Ok(o) => ops::render_outcome(obj, o),
                Err(e) if json => format!(
                    "{}\n",
                    serde_json::json!({"bucket": obj.bucket, "key": obj.key, "outcome": "not_retried", "detail": e.to_string()})
                ),
                Err(e) => format!("s3://{}/{}: not retried: {e}\n", obj.bucket, obj.key),
            });
        };
        let summary = pipeline.retry_failed(&prefix, owner, report).await;
        progress.finish();
        return match summary {
            Ok(summary) => {
                if json {
                    print_json(&serde_json::json!({ "summary": summary }));
                } else {
                    println!("{summary}");
                }
                exit_if(summary.failed_again + summary.other == 0)
            }
            Err(e) => op_exit(e),
        };
    };
    let obj = match ops::object_ref(&url) {
        Ok(obj) => obj,
        Err(e) => return exit_bad_input(e),
    };
    show_size(&pipeline, &progress, &obj).await;
    let outcome = pipeline.retry(&obj, owner).await;
    progress.finish();
    match outcome {
        Ok(outcome) => {
            print_outcome(&obj, &outcome, json);
            exit_if(ops::outcome_ok(&outcome))
        }
        Err(e) => op_exit(e),
    }
}

async fn scan(clients: &Clients, settings: Settings, args: ScanArgs, owner: &str) -> ExitCode {
    let progress = ProgressLine::start(true);
    let prefix = args.prefix.unwrap_or_else(|| settings.prefix.clone());
    let pipeline = observed(clients, settings, &progress);
    let json = args.json;
    let scanned = pipeline
        .scan(&args.bucket, &prefix, args.enqueue, owner, |text: &str| {
            if !json {
                progress.bar_println(|| text.to_string());
            }
        })
        .await;
    progress.finish();
    match scanned {
        Ok(summary) => {
            if json {
                print_json(&serde_json::to_value(&summary).unwrap_or_default());
            } else {
                println!("{summary}");
            }
            exit_if(summary.failed + summary.other == 0)
        }
        Err(e) => exit_failure(e),
    }
}

/// `worker`: polls the queue like the Lambda trigger.
async fn worker(clients: &Clients, settings: Settings, args: WorkerArgs) -> ExitCode {
    let Some(url) = args.queue_url.or_else(|| settings.queue_url.clone()) else {
        return exit_bad_input("worker: give --queue-url or set S3I_QUEUE_URL");
    };
    let pipeline = crate::aws::pipeline(clients, settings);
    let idle = args.idle_exit.map(std::time::Duration::from_secs);
    let retry = std::time::Duration::from_secs(args.retry_after);
    match crate::aws::work_queue(&pipeline, &clients.sqs, &url, idle, retry, print).await {
        Ok(n) => {
            eprintln!("worker: {n} messages handled, queue idle");
            ExitCode::SUCCESS
        }
        Err(e) => exit_failure(e),
    }
}

/// One object's outcome: its lines, or one JSON object.
fn print_outcome(obj: &ObjectRef, outcome: &ObjectOutcome, json: bool) {
    if json {
        print_json(&ops::outcome_json(obj, outcome));
    } else {
        print(&ops::render_outcome(obj, outcome));
    }
}

/// 0 when `ok`, 1 otherwise.
fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE as u8)
    }
}

/// An operation refused (2) or failed (1).
fn op_exit(e: OpError) -> ExitCode {
    match e {
        OpError::Input(e) => exit_bad_input(e),
        OpError::Runtime(e) => exit_failure(e),
    }
}

/// `setup`: the tables, bucket, queue and notification.
pub fn run_setup(args: SetupArgs) -> ExitCode {
    init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let tables = settings::Tables::from_env();
    if let Some(problem) = args
        .eventbridge_rule_arn
        .as_deref()
        .and_then(crate::aws::rule_arn_problem)
    {
        return exit_bad_input(format!("--eventbridge-rule-arn: {problem}"));
    }
    runtime.block_on(async move {
        let clients = Clients::from_env().await;
        let announce = match args.eventbridge_rule_arn.as_deref() {
            Some(rule_arn) => crate::aws::Announce::EventBridge { rule_arn },
            None => crate::aws::Announce::Queue,
        };
        let made = crate::aws::setup(
            &clients,
            &tables.claims,
            tables.dedupe.as_deref(),
            &args.bucket,
            &args.queue,
            &args.prefix,
            announce,
        )
        .await;
        match made {
            Ok(url) => {
                println!("{url}");
                ExitCode::SUCCESS
            }
            Err(e) => exit_failure(e),
        }
    })
}
