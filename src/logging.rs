//! Log setup: `tracing` to stderr, plain lines for people and journald, JSON for log shippers.
//!
//! Under systemd, stderr goes to the journal, which adds its own timestamps and reads a `<N>`
//! syslog-priority prefix at the start of each line (`SyslogLevelPrefix=`, on by default), so
//! `journalctl -p warning` works. Elsewhere plain lines carry an RFC 3339 timestamp and use colours
//! only on a terminal.
//!
//! Every line passes through a [`Redactor`] on its way out, so a secret quoted in an error (a
//! server echoing our headers) never reaches the journal.

use std::fmt;
use std::io::{IsTerminal, Write};

use crate::secret::{Redactor, SharedRedactor};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald-friendly under systemd).
    #[default]
    Plain,
    /// One JSON object per line, for shipping to a log platform.
    Json,
}

/// How plain lines look, decided from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainStyle {
    pub ansi: bool,
    pub timestamps: bool,
    /// `<N>` syslog priority prefix for journald.
    pub priority_prefix: bool,
}

/// Whether stderr is the journal stream systemd set up. `JOURNAL_STREAM` is `DEV:INODE` of that
/// stream; comparing it with stderr avoids misfiring in a child whose stderr was redirected
/// elsewhere but which inherited the variable.
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr_dev_ino: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr_dev_ino) {
        (Ok(d), Ok(i), Some(actual)) => (d, i) == actual,
        _ => false,
    }
}

/// The plain style for: stderr a terminal?, stderr the journal?, `NO_COLOR` set (no-color.org)?
pub fn plain_style(stderr_is_tty: bool, under_journald: bool, no_color: bool) -> PlainStyle {
    PlainStyle {
        ansi: stderr_is_tty && !no_color && !under_journald,
        timestamps: !under_journald,
        priority_prefix: under_journald,
    }
}

/// The filter: `RUST_LOG` when set and valid, else `default_level`. Returns a warning to log once
/// the subscriber is installed when `RUST_LOG` could not be parsed.
pub fn filter(rust_log: Option<&str>, default_level: &str) -> (EnvFilter, Option<String>) {
    let fallback = || EnvFilter::try_new(default_level).unwrap_or_else(|_| EnvFilter::new("info"));
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (fallback(), None),
        Some(spec) => match EnvFilter::try_new(spec) {
            Ok(f) => (f, None),
            Err(e) => (
                fallback(),
                Some(format!(
                    "ignoring RUST_LOG={spec:?} ({e}); using level {default_level:?}"
                )),
            ),
        },
    }
}

/// Writes each formatted line to `out`, secrets blanked. `tracing_subscriber` formats a whole
/// event and writes it with one `write_all`, so a secret is never split across two writes.
struct RedactingWriter<W: Write> {
    redactor: Redactor,
    out: W,
}

impl<W: Write> RedactingWriter<W> {
    fn new(redactor: Redactor, out: W) -> Self {
        RedactingWriter { redactor, out }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(&self.redactor.redact_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Stderr, with the secrets known at each line blanked.
struct RedactedStderr(SharedRedactor);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactingWriter<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.0.current(), std::io::stderr())
    }
}

/// Installs the global subscriber, writing to stderr with the secrets of the returned handle
/// blanked (add each configuration's to it). Safe to call twice (tests, embedded use): the
/// second call installs nothing.
pub fn init(format: LogFormat, default_level: &str) -> SharedRedactor {
    let secrets = SharedRedactor::default();
    let rust_log = std::env::var("RUST_LOG").ok();
    let (env_filter, warning) = filter(rust_log.as_deref(), default_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(RedactedStderr(secrets.clone()));
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
            .is_ok(),
        LogFormat::Plain => {
            let stderr = std::io::stderr();
            let dev_ino = rustix::fs::fstat(&stderr).ok().map(|st| dev_ino(&st));
            let journal =
                stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref(), dev_ino);
            let style = plain_style(
                stderr.is_terminal(),
                journal,
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            );
            let builder = builder.with_ansi(style.ansi);
            if style.timestamps {
                builder.try_init().is_ok()
            } else {
                let inner = tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false);
                builder
                    .event_format(PriorityPrefix(inner))
                    .try_init()
                    .is_ok()
            }
        }
    };
    if let Some(w) = warning {
        if installed {
            tracing::warn!("{w}");
        }
    }
    secrets
}

// st_dev/st_ino are u64 on x86_64 but narrower or signed on some other architectures.
#[allow(clippy::unnecessary_cast)]
fn dev_ino(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Prefixes each line with its syslog priority, `<3>` error … `<7>` debug (sd-daemon(3)).
struct PriorityPrefix<F>(F);

pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<S, N, F> FormatEvent<S, N> for PriorityPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_detection_compares_device_and_inode() {
        assert!(stderr_is_journal(Some("8:1234"), Some((8, 1234))));
        assert!(
            !stderr_is_journal(Some("8:1234"), Some((8, 999))),
            "redirected child"
        );
        assert!(!stderr_is_journal(None, Some((8, 1234))));
        assert!(!stderr_is_journal(Some("garbage"), Some((8, 1234))));
        assert!(!stderr_is_journal(Some("8:1234"), None));
    }

    #[test]
    fn plain_style_follows_terminal_journal_and_no_color() {
        let journald = plain_style(false, true, false);
        assert!(!journald.ansi && !journald.timestamps && journald.priority_prefix);
        let tty = plain_style(true, false, false);
        assert!(tty.ansi && tty.timestamps && !tty.priority_prefix);
        assert!(!plain_style(true, false, true).ansi, "NO_COLOR");
        let pipe = plain_style(false, false, false);
        assert!(!pipe.ansi && pipe.timestamps);
    }

    #[test]
    fn rust_log_wins_and_a_bad_one_falls_back_with_a_warning() {
        let (f, w) = filter(None, "info");
        assert_eq!(f.to_string(), "info");
        assert!(w.is_none());
        let (f, w) = filter(Some("codacy_audit_forwarder=debug"), "info");
        assert_eq!(f.to_string(), "codacy_audit_forwarder=debug");
        assert!(w.is_none());
        let (f, w) = filter(Some("=[{"), "warn");
        assert_eq!(f.to_string(), "warn");
        assert!(w.unwrap().contains("RUST_LOG"));
    }

    #[test]
    fn log_lines_are_written_with_secrets_blanked() {
        let secrets = SharedRedactor::default();
        let token = crate::secret::Secret::new("codacy-token-1234");
        secrets.add(&Redactor::of([&token]));
        secrets.add(&Redactor::of([&crate::secret::Secret::new(
            "hook-token-5678",
        )]));
        let mut out = Vec::new();
        let line = b"ERROR 400: echo api-token: codacy-token-1234, bearer hook-token-5678\n";
        let n = RedactingWriter::new(secrets.current(), &mut out)
            .write(line)
            .unwrap();
        assert_eq!(n, line.len(), "the whole line counts as written");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ERROR 400: echo api-token: [redacted], bearer [redacted]\n"
        );
    }

    #[test]
    fn priorities_match_syslog_levels() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }
}
