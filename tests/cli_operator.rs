//! Operator experience through the real binary: help for every option, `-c`, completions,
//! `preview | head`, and `demo` (URL and token printed, state lock, summary on SIGTERM).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("-h").output().unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_option_has_a_help_line_and_config_has_c() {
    let commands: &[&[&str]] = &[
        &[],
        &["run"],
        &["once"],
        &["check"],
        &["demo"],
        &["preview"],
        &["catalog"],
        &["state", "show"],
        &["state", "reset"],
        &["completions"],
        &["man"],
    ];
    for args in commands {
        let text = help(args);
        // `-h` puts an option and its help on one line: "  -c, --config <FILE>  Configuration..."
        for line in text.lines().filter(|l| {
            let t = l.trim_start();
            (t.starts_with("--") || t.starts_with('-')) && l.starts_with("  ")
        }) {
            let described = line
                .trim_start()
                .split_once("  ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            assert!(described, "{args:?}: option without a help line: {line:?}");
        }
    }
    for args in [
        &["run"][..],
        &["once"],
        &["check"],
        &["state", "show"],
        &["state", "reset"],
    ] {
        assert!(help(args).contains("-c, --config <FILE>"), "{args:?}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("codacy-audit-forwarder") && text.contains("offline"),
            "{shell}"
        );
    }
}

#[test]
fn preview_into_a_reader_that_stops_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..40_000 {
        writeln!(
            f,
            r#"{{"actor":{{"id":{i},"email":"a@example.com"}},"action":"user.login","timestamp":{},"result":"success"}}"#,
            1_700_000_000_000i64 + i
        )
        .unwrap();
    }
    drop(f);
    let mut child = Command::new(BIN)
        .args(["preview", "--format", "cef"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line, close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("CEF:0|"), "{first}");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn demo_prints_its_url_and_token_holds_the_lock_and_sums_up_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(BIN)
        .args(["demo", "--out"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Ctrl-C") {
            break;
        }
    }
    assert!(
        banner.contains("Codacy API simulator: http://127.0.0.1:")
            && banner.contains("API token:            demo-token"),
        "{banner}"
    );
    // A second demo on the same directory is refused: the first holds the state lock.
    let second = Command::new(BIN)
        .args(["demo", "--duration", "1s", "--out"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another codacy-audit-forwarder"), "{err}");

    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("delivered ") && l.contains("this run")),
        "{rest:?}"
    );
}
