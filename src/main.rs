//! CLI only: parse, load config, run, map errors to exit codes (0 ok, 1 failure, 2 configuration).

use clap::{Parser, Subcommand};
use codacy_audit_forwarder::agent::{self, StartError};
use codacy_audit_forwarder::clock::{self, SharedClock};
use codacy_audit_forwarder::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use codacy_audit_forwarder::logging::{self, LogFormat};
use codacy_audit_forwarder::secret::{Redactor, SharedRedactor};
use codacy_audit_forwarder::telemetry::Metrics;
use codacy_audit_forwarder::{cli, status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// jemalloc with one arena: a lower and steadier peak RSS than glibc's per-thread arenas during a
/// backfill, and cheaper malloc/free (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "codacy-audit-forwarder",
    version,
    about = "Streams a Codacy organization's audit log into your SIEM"
)]
struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT (SIGHUP reloads the configuration).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// One full sync pass for every organization and sink, then exit (0 = all delivered).
    Once {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration, call the API once per organization and probe every sink.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run against the built-in Codacy API simulator, writing DIR/audit.ndjson.
    Demo {
        #[arg(long, default_value = "./demo-out")]
        out: PathBuf,
        /// Stop after this long (e.g. 30s); default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Print Codacy events (JSON array, v3 envelope or NDJSON; stdin by default) in a format.
    Preview {
        #[arg(long, value_parser = ["json", "ecs", "cef", "csv"])]
        format: String,
        /// Organization the events belong to (it is part of every event id).
        #[arg(long, default_value = "gh/example")]
        org: String,
        /// ECS data_stream.namespace.
        #[arg(long, default_value = "default")]
        ecs_namespace: String,
        /// Input file; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Write one organization's audit log over [--from, --to) to a file or stdout, oldest first,
    /// in a format (csv for a spreadsheet); moves no checkpoint, so it runs beside the daemon.
    Export {
        /// Configuration whose [codacy] settings (URL, token, limits) are used.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// provider/name, e.g. gh/acme
        #[arg(long)]
        org: String,
        /// Start, inclusive: a date (2026-07-01, midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// End, exclusive: a date or an RFC 3339 time; default now.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_parser = ["csv", "json", "ecs", "cef"], default_value = "csv")]
        format: String,
        /// Write to FILE (as FILE.partial, renamed when complete) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the action catalog (names, ECS/CEF/CIM classification) the encoders use.
    Catalog {
        #[arg(long, value_parser = ["csv"], default_value = "csv")]
        format: String,
    },
    /// Inspect or move checkpoints.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// A table per organization and sink: cursor, lag, ids in overlap, last error.
    Show {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Move one checkpoint (replay from an earlier time, or skip ahead).
    Reset {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// provider/name, e.g. gh/acme
        #[arg(long)]
        org: String,
        #[arg(long)]
        sink: String,
        /// RFC 3339 time, e.g. 2024-07-01T00:00:00Z
        #[arg(long)]
        to: String,
        /// Proceed although the daemon is running or the time is past Codacy's retention.
        #[arg(long)]
        yes: bool,
    },
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn start_error(e: &StartError, redactor: &Redactor) -> ExitCode {
    eprintln!("error: {}", redactor.redact(&e.to_string()));
    ExitCode::from(e.exit_code() as u8)
}

/// Loads the configuration and has its secrets blanked from log lines from now on.
fn load(path: &std::path::Path, log: &SharedRedactor) -> Result<(Config, Redactor), ExitCode> {
    let cfg = Config::load(path).map_err(|e| config_error(&e))?;
    let redactor = cfg.redactor();
    log.add(&redactor);
    Ok((cfg, redactor))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = logging::init(cli.log_format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async_main(cli, log))
}

async fn async_main(cli: Cli, log: SharedRedactor) -> ExitCode {
    let clock: SharedClock = clock::system();
    match cli.command {
        Command::Run { config } => {
            let (cfg, redactor) = match load(&config, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cli::run_daemon(config, cfg, clock, log).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => start_error(&e, &redactor),
            }
        }
        Command::Once { config } => {
            let (cfg, redactor) = match load(&config, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let metrics = Arc::new(Metrics::new());
            let cfg = Arc::new(cfg);
            match agent::once(cfg.clone(), metrics, clock).await {
                Ok(reports) => {
                    let mut ok = true;
                    let sinks: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
                    for (org, r) in &reports {
                        ok &= r.ok();
                        let summary =
                            codacy_audit_forwarder::pipeline::once_summary(org, r, &sinks);
                        print!("{}", redactor.redact(&summary));
                    }
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => start_error(&e, &redactor),
            }
        }
        Command::Check { config } => {
            let (cfg, redactor) = match load(&config, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if cli::check(&cfg, &clock, &redactor).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Demo { out, duration } => {
            match codacy_audit_forwarder::demo::run(out, duration, clock).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => start_error(&e, &Redactor::default()),
            }
        }
        Command::Preview {
            format,
            org,
            ecs_namespace,
            file,
        } => match cli::preview(&format, &org, &ecs_namespace, file.as_deref(), &clock) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(if e.starts_with("usage:") { 2 } else { 1 })
            }
        },
        Command::Export {
            config,
            org,
            from,
            to,
            format,
            output,
        } => {
            let (cfg, redactor) = match load(&config, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let args = codacy_audit_forwarder::export::ExportArgs {
                org,
                from,
                to,
                format,
                output,
            };
            match codacy_audit_forwarder::export::run(&args, &cfg, &clock).await {
                Ok(_) => ExitCode::SUCCESS,
                // `export ... | head`: the reader has what it wanted.
                Err(codacy_audit_forwarder::export::ExportError::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}", redactor.redact(&e.to_string()));
                    ExitCode::from(e.exit_code())
                }
            }
        }
        // Only CSV today (the Splunk add-on's lookup); `--format` leaves room for more.
        Command::Catalog { format: _ } => {
            print!("{}", codacy_audit_forwarder::format::catalog::csv());
            ExitCode::SUCCESS
        }
        Command::State { command } => match command {
            StateCommand::Show { config } => {
                let (cfg, redactor) = match load(&config, &log) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                // status.json is written redacted; this also covers files of older versions.
                print!("{}", redactor.redact(&status::show(&cfg, clock.now_ms())));
                ExitCode::SUCCESS
            }
            StateCommand::Reset {
                config,
                org,
                sink,
                to,
                yes,
            } => {
                let cfg = match Config::load(&config) {
                    Ok(c) => c,
                    Err(e) => return config_error(&e),
                };
                match status::reset(&cfg, &org, &sink, &to, yes, clock.now_ms()) {
                    Ok(msg) => {
                        println!("{msg}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {}", e.message);
                        ExitCode::from(e.exit_code)
                    }
                }
            }
        },
    }
}
