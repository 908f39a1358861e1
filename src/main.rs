//! CLI only: parse, load config, run, map errors to exit codes (0 ok, 1 failure, 2 configuration).

use clap::{CommandFactory, Parser, Subcommand};
use codacy_audit_forwarder::agent::{self, StartError};
use codacy_audit_forwarder::clock::{self, SharedClock};
use codacy_audit_forwarder::config::{Config, ConfigError, LoadOptions, DEFAULT_CONFIG_PATH};
use codacy_audit_forwarder::logging::{self, LogFormat};
use codacy_audit_forwarder::secret::{Redactor, SharedRedactor};
use codacy_audit_forwarder::telemetry::Metrics;
use codacy_audit_forwarder::{check, cli, status};
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

/// `--config`/`-c`, the same for every command that reads the configuration.
#[derive(clap::Args, Debug)]
struct ConfigArg {
    /// Configuration file (TOML; see config/example.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    path: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT (SIGHUP reloads the configuration).
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// One full sync pass for every organization and sink, then exit (0 = all delivered).
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the outcome as one JSON object on stdout (shape in the README).
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration, ask the API for each organization's last hour and probe every
    /// sink, changing nothing (exit 0 all good, 1 something fails, 2 configuration incomplete).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Validate the configuration and read every secret without contacting anything.
        #[arg(long)]
        offline: bool,
        /// Print the report as one JSON object on stdout (shape in the README).
        #[arg(long)]
        json: bool,
    },
    /// Run against the built-in Codacy API simulator, writing DIR/audit.ndjson.
    Demo {
        /// Directory for audit.ndjson and the demo's state.
        #[arg(long, value_name = "DIR", default_value = "./demo-out")]
        out: PathBuf,
        /// Stop after this long (e.g. 30s); default: until Ctrl-C or SIGTERM.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Print Codacy events (JSON array, v3 envelope or NDJSON; stdin by default) in a format.
    Preview {
        /// Output format.
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
        /// Output format (CSV, the Splunk add-on's lookup).
        #[arg(long, value_parser = ["csv"], default_value = "csv")]
        format: String,
    },
    /// Inspect or move checkpoints.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print a shell completion script (the packages install them).
    Completions {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; the packages install it as codacy-audit-forwarder(1)).
    Man {
        /// Write every page instead (codacy-audit-forwarder.1 and one per command, e.g.
        /// codacy-audit-forwarder-check.1) into this existing directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// A table per organization and sink: cursor, lag, ids in overlap, last error.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON object on stdout instead of the table (shape in the README).
        #[arg(long)]
        json: bool,
    },
    /// Move one checkpoint (replay from an earlier time, or skip ahead).
    Reset {
        #[command(flatten)]
        config: ConfigArg,
        /// Organization as provider/name, e.g. gh/acme.
        #[arg(long)]
        org: String,
        /// Sink name, as in the configuration.
        #[arg(long)]
        sink: String,
        /// New cursor: an RFC 3339 time, e.g. 2024-07-01T00:00:00Z.
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

/// Loads the configuration and has its secrets blanked from log lines from now on; says where
/// the token came from (root running `once` finds the service's credential, and should know).
fn load_with(
    path: &std::path::Path,
    options: &LoadOptions,
    log: &SharedRedactor,
) -> Result<(Config, Redactor), ConfigError> {
    let cfg = Config::load_with(path, options)?;
    if cfg.codacy.token_missing.is_none() {
        tracing::info!(source = %cfg.codacy.token_source, "API token found");
    }
    let redactor = cfg.redactor();
    log.add(&redactor);
    Ok((cfg, redactor))
}

fn load(path: &std::path::Path, log: &SharedRedactor) -> Result<(Config, Redactor), ExitCode> {
    load_with(path, &LoadOptions::from_env(), log).map_err(|e| config_error(&e))
}

/// `state` never calls the API: it works without a token.
fn load_without_token(
    path: &std::path::Path,
    log: &SharedRedactor,
) -> Result<(Config, Redactor), ExitCode> {
    load_with(path, &LoadOptions::from_env().token_optional(), log).map_err(|e| config_error(&e))
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
            let (cfg, redactor) = match load(&config.path, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cli::run_daemon(config.path, cfg, clock, log).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => start_error(&e, &redactor),
            }
        }
        Command::Once { config, json } => {
            let (cfg, redactor) = match load(&config.path, &log) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let metrics = Arc::new(Metrics::new());
            let cfg = Arc::new(cfg);
            match agent::once(cfg.clone(), metrics, clock).await {
                Ok(reports) => {
                    let ok = reports.iter().all(|(_, r)| r.ok());
                    let sinks: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
                    let text = if json {
                        cli::once_json(&reports)
                    } else {
                        cli::once_text(&reports, &sinks)
                    };
                    let _ = cli::write_stdout(redactor.redact(&text).as_bytes());
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => start_error(&e, &redactor),
            }
        }
        Command::Check {
            config,
            offline,
            json,
        } => {
            // Without a token the rest is still validated (and the token reported missing).
            let options = LoadOptions::from_env().token_optional();
            let (cfg, redactor) = match load_with(&config.path, &options, &log) {
                Ok(c) => c,
                Err(e) => {
                    if json {
                        let json = check::config_error_json(&config.path, &e.to_string()) + "\n";
                        let _ = cli::write_stdout(json.as_bytes());
                    }
                    return config_error(&e);
                }
            };
            let report = check::check(&cfg, &clock, offline).await;
            ExitCode::from(check::print(&report, json, &redactor))
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
            let _ = cli::write_stdout(codacy_audit_forwarder::format::catalog::csv().as_bytes());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(
                shell,
                &mut cmd,
                "codacy-audit-forwarder",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir: Some(dir) } => match clap_mangen::generate_to(Cli::command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "error: cannot write the manual pages into {}: {e}",
                    dir.display()
                );
                ExitCode::from(1)
            }
        },
        Command::Man { dir: None } => {
            let mut out = Vec::new();
            // Built as `--dir` builds it, so the two give the same main page.
            let mut cmd = Cli::command().disable_help_subcommand(true);
            cmd.build();
            match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => {
                    let _ = cli::write_stdout(&out);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot render the manual page: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::State { command } => match command {
            StateCommand::Show { config, json } => {
                let (cfg, redactor) = match load_without_token(&config.path, &log) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let now = clock.now_ms();
                let text = if json {
                    status::show_json(&cfg, now)
                } else {
                    status::show(&cfg, now)
                };
                // status.json is written redacted; this also covers files of older versions.
                let _ = cli::write_stdout(redactor.redact(&text).as_bytes());
                ExitCode::SUCCESS
            }
            StateCommand::Reset {
                config,
                org,
                sink,
                to,
                yes,
            } => {
                let (cfg, _) = match load_without_token(&config.path, &log) {
                    Ok(c) => c,
                    Err(code) => return code,
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
