//! CLI only: parse, load config, run, map errors to exit codes (0 ok, 1 failure, 2 configuration).

use clap::{CommandFactory, Parser, Subcommand};
use codacy_audit_forwarder::agent;
use codacy_audit_forwarder::cli::{self, CliError};
use codacy_audit_forwarder::clock::{self, SharedClock};
use codacy_audit_forwarder::config::{Config, ConfigError, LoadOptions, DEFAULT_CONFIG_PATH};
use codacy_audit_forwarder::export::{self, ExportError};
use codacy_audit_forwarder::logging::{self, LogFormat};
use codacy_audit_forwarder::secret::SharedRedactor;
use codacy_audit_forwarder::telemetry::Metrics;
use codacy_audit_forwarder::{check, demo, status};
use std::path::{Path, PathBuf};
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

impl Command {
    /// The configuration of a command run with `--json`: its errors go to stdout as JSON too.
    fn json_config(&self) -> Option<&Path> {
        match self {
            Command::Once { config, json: true }
            | Command::Check {
                config, json: true, ..
            }
            | Command::State {
                command: StateCommand::Show { config, json: true },
            } => Some(&config.path),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = logging::init(cli.log_format, "info");
    let json_config = cli.command.json_config().map(Path::to_path_buf);
    let fail = |e: CliError| ExitCode::from(e.report(json_config.as_deref(), &log.current()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(CliError::Runtime(e)),
    };
    // The runtime stays up while the error is reported, as while the command ran.
    match runtime.block_on(run(cli.command, log.clone())) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// Loads the configuration and has its secrets blanked from log lines, errors and output from
/// now on; says where the token came from (root running `once` finds the service's credential,
/// and should know).
fn load(path: &Path, options: LoadOptions, log: &SharedRedactor) -> Result<Config, ConfigError> {
    let cfg = Config::load_with(path, &options)?;
    if cfg.codacy.token_missing.is_none() {
        tracing::info!(source = %cfg.codacy.token_source, "API token found");
    }
    log.add(&cfg.redactor());
    Ok(cfg)
}

/// Runs one command: `Ok` with the exit code of a command that ran to its end (`once` and
/// `check` say 1 when something failed), `Err` when it could not.
async fn run(command: Command, log: SharedRedactor) -> Result<ExitCode, CliError> {
    let clock: SharedClock = clock::system();
    match command {
        Command::Run { config } => {
            let cfg = load(&config.path, LoadOptions::from_env(), &log)?;
            cli::run_daemon(config.path, cfg, clock, log).await?;
        }
        Command::Once { config, json } => return once(&config.path, json, &log, clock).await,
        Command::Check {
            config,
            offline,
            json,
        } => {
            // Without a token the rest is still validated (and the token reported missing).
            let cfg = load(&config.path, LoadOptions::from_env().token_optional(), &log)?;
            let report = check::check(&cfg, &clock, offline).await;
            return Ok(ExitCode::from(check::print(&report, json, &log.current())));
        }
        Command::Demo { out, duration } => demo::run(out, duration, clock).await?,
        Command::Preview {
            format,
            org,
            ecs_namespace,
            file,
        } => cli::preview(&format, &org, &ecs_namespace, file.as_deref(), &clock)?,
        Command::Export {
            config,
            org,
            from,
            to,
            format,
            output,
        } => {
            let cfg = load(&config, LoadOptions::from_env(), &log)?;
            let args = export::ExportArgs {
                org,
                from,
                to,
                format,
                output,
            };
            match export::run(&args, &cfg, &clock).await {
                Ok(_) => {}
                // `export ... | head`: the reader has what it wanted.
                Err(ExportError::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Only CSV today (the Splunk add-on's lookup); `--format` leaves room for more.
        Command::Catalog { format: _ } => {
            let _ = cli::write_stdout(codacy_audit_forwarder::format::catalog::csv().as_bytes());
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let out = &mut std::io::stdout();
            clap_complete::generate(shell, &mut cmd, "codacy-audit-forwarder", out);
        }
        Command::Man { dir } => man(dir)?,
        Command::State { command } => state(command, &log, &clock)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `once`: exit 1 when an organization or sink failed (the summary says which).
async fn once(
    path: &Path,
    json: bool,
    log: &SharedRedactor,
    clock: SharedClock,
) -> Result<ExitCode, CliError> {
    let cfg = Arc::new(load(path, LoadOptions::from_env(), log)?);
    let reports = agent::once(cfg.clone(), Arc::new(Metrics::new()), clock).await?;
    let text = if json {
        cli::once_json(&reports)
    } else {
        let sinks: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
        cli::once_text(&reports, &sinks)
    };
    let _ = cli::write_stdout(log.current().redact(&text).as_bytes());
    Ok(if reports.iter().all(|(_, r)| r.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `state show` / `state reset`: they never call the API, so they work without a token.
fn state(command: StateCommand, log: &SharedRedactor, clock: &SharedClock) -> Result<(), CliError> {
    let options = LoadOptions::from_env().token_optional();
    match command {
        StateCommand::Show { config, json } => {
            let cfg = load(&config.path, options, log)?;
            let now = clock.now_ms();
            let text = if json {
                status::show_json(&cfg, now)
            } else {
                status::show(&cfg, now)
            };
            // status.json is written redacted; this also covers files of older versions.
            let _ = cli::write_stdout(log.current().redact(&text).as_bytes());
        }
        StateCommand::Reset {
            config,
            org,
            sink,
            to,
            yes,
        } => {
            let cfg = load(&config.path, options, log)?;
            println!(
                "{}",
                status::reset(&cfg, &org, &sink, &to, yes, clock.now_ms())?
            );
        }
    }
    Ok(())
}

/// `man`: the main page on stdout, or every page into `dir`.
fn man(dir: Option<PathBuf>) -> Result<(), CliError> {
    if let Some(dir) = dir {
        return clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|source| CliError::ManPages { dir, source });
    }
    let mut out = Vec::new();
    // Built as `--dir` builds it, so the two give the same main page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(CliError::ManPage)?;
    let _ = cli::write_stdout(&out);
    Ok(())
}
