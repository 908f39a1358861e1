//! Tests of the configuration: every documented key, and every error naming its key.
use super::token::{resolve_token, FoundToken};
use super::*;
use crate::event::Provider;
use crate::format::Format;

const GOOD: &str = r#"
[codacy]
base_url = "https://app.codacy.com"
page_limit = 1000
request_timeout = "30s"

[agent]
state_dir = "/tmp/x"
poll_interval = "60s"
initial_lookback = "24h"
overlap = "10m"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "archive"
type = "file"
path = "/tmp/x/audit.ndjson"
format = "json"
"#;

fn tokens() -> TokenSources {
    TokenSources {
        env: Some("tok".into()),
        credentials_directory: None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "test.toml", &tokens(), false)
}

#[test]
fn shards_split_the_organizations_without_overlap_and_bad_values_name_the_key() {
    let mut text = GOOD.replace("[agent]", "[agent]\nshard = \"SHARD\"");
    for i in 0..40 {
        text.push_str(&format!(
            "\n[[organizations]]\nprovider = \"gl\"\nname = \"org-{i}\"\n"
        ));
    }
    let all = parse(&text.replace("shard = \"SHARD\"", ""))
        .unwrap()
        .organizations;
    let mut seen = Vec::new();
    for k in 0..3 {
        let c = parse(&text.replace("SHARD", &format!("{k}/3"))).unwrap();
        assert_eq!(c.organizations_listed, 41);
        assert!(
            c.organizations.len() >= 5,
            "a shard of 41 got {}",
            c.organizations.len()
        );
        assert!(c
            .shard_summary()
            .unwrap()
            .starts_with(&format!("shard {k}/3: this agent serves")));
        seen.extend(c.organizations);
    }
    seen.sort();
    let mut all_sorted = all.clone();
    all_sorted.sort();
    assert_eq!(seen, all_sorted, "every organization in exactly one shard");
    for bad in ["3/3", "0/0", "a/b", "1"] {
        let e = parse(&text.replace("SHARD", bad)).unwrap_err();
        assert_eq!(e.key, "agent.shard", "{bad}: {e}");
    }
}

#[test]
fn scheduler_and_poll_limits_are_checked() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.codacy.max_concurrent_requests, 4);
    assert_eq!(c.codacy.max_requests_per_second, 10.0);
    assert_eq!(c.agent.max_poll_interval, c.agent.poll_interval);
    for (table, line, key) in [
        (
            "[codacy]",
            "max_concurrent_requests = 0",
            "codacy.max_concurrent_requests",
        ),
        (
            "[codacy]",
            "max_requests_per_second = -1.0",
            "codacy.max_requests_per_second",
        ),
        (
            "[agent]",
            "max_poll_interval = \"10s\"",
            "agent.max_poll_interval",
        ),
    ] {
        let e = parse(&GOOD.replace(table, &format!("{table}\n{line}"))).unwrap_err();
        assert_eq!(e.key, key, "{line}: {e}");
    }
    let c = parse(&GOOD.replace("[agent]", "[agent]\nmax_poll_interval = \"15m\"")).unwrap();
    assert_eq!(c.agent.max_poll_interval, Duration::from_secs(900));
}

#[test]
fn the_documented_keys_work() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.codacy.page_limit, 1000);
    assert_eq!(c.agent.overlap, Duration::from_secs(600));
    assert_eq!(c.organizations, vec![OrgRef::new(Provider::Gh, "acme")]);
    assert_eq!(c.sinks[0].name, "archive");
    assert_eq!(c.codacy.api_token.expose(), "tok");
}

#[test]
fn csv_is_a_file_sink_format_only() {
    let c = parse(&GOOD.replace("format = \"json\"", "format = \"csv\"")).unwrap();
    assert_eq!(c.sinks[0].format, Format::Csv);
    let file = c.sinks[0]
        .config
        .as_any()
        .downcast_ref::<crate::sink::file::FileSinkConfig>();
    assert_eq!(file.unwrap().header, Some(crate::format::csv::HEADER));
    let syslog = GOOD.replace(
        "type = \"file\"\npath = \"/tmp/x/audit.ndjson\"\nformat = \"json\"",
        "type = \"syslog\"\naddress = \"tcp://127.0.0.1:514\"\nformat = \"csv\"",
    );
    let msg = parse(&syslog).unwrap_err().to_string();
    assert!(msg.contains("key `sinks[0].format`"), "{msg}");
    assert!(msg.contains("for `file` sinks only"), "{msg}");
    assert!(msg.contains("json, ecs or cef"), "{msg}");
}

#[test]
fn stream_sinks_batch_more_by_default_to_spare_fsyncs() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.sinks[0].batch_max_events, 5000);
    assert_eq!(c.agent.max_events_in_memory, DEFAULT_MAX_EVENTS_IN_MEMORY);
    let c = parse(&GOOD.replace("format = \"json\"", "batch_max_events = 7")).unwrap();
    assert_eq!(c.sinks[0].batch_max_events, 7);
    let more = format!(
        "{GOOD}\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:514\"\n\
         \n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\n\
         \n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n"
    );
    let c = parse(&more).unwrap();
    let batch = |name: &str| {
        c.sinks
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .batch_max_events
    };
    assert_eq!(
        (batch("siem"), batch("bus"), batch("hook")),
        (5000, 5000, 500)
    );
}

fn error_for(text: &str) -> ConfigError {
    parse(text).unwrap_err()
}

#[test]
fn errors_name_the_key() {
    let e = error_for(&GOOD.replace("poll_interval = \"60s\"", "poll_interval = \"often\""));
    assert_eq!(e.key, "agent.poll_interval");
    assert!(e.to_string().contains("test.toml"));
    let e = error_for(&GOOD.replace("provider = \"gh\"", "provider = \"github\""));
    assert_eq!(e.key, "organizations[0].provider");
    let e = error_for(&GOOD.replace("[agent]", "[agent]\npoll_intervall = \"1s\""));
    assert!(
        e.key.contains("agent") && e.message.contains("poll_intervall"),
        "{e}"
    );
    let e = error_for(&format!(
        "{GOOD}\n[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"/tmp/y\"\n"
    ));
    assert_eq!(e.key, "sinks[1].name");
    let e = error_for(&GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""));
    assert_eq!(e.key, "agent.initial_lookback");
    let e = error_for(&GOOD.replace("format = \"json\"", "format = \"xml\""));
    assert_eq!(e.key, "sinks[0].format");
    let e = error_for(&GOOD.replace(
        "path = \"/tmp/x/audit.ndjson\"",
        "path = \"/tmp/x/audit.ndjson\"\nmode = \"rw\"\ncolour = 1",
    ));
    assert!(e.key.starts_with("sinks[0]"), "{e}");
}

#[test]
fn max_response_bytes_defaults_to_64_mib_and_refuses_tiny_values() {
    assert_eq!(parse(GOOD).unwrap().codacy.max_response_bytes, 64 << 20);
    let c = parse(&GOOD.replace("[codacy]", "[codacy]\nmax_response_bytes = 2048")).unwrap();
    assert_eq!(c.codacy.max_response_bytes, 2048);
    let e = error_for(&GOOD.replace("[codacy]", "[codacy]\nmax_response_bytes = 0"));
    assert_eq!(e.key, "codacy.max_response_bytes");
    assert!(e.message.contains("at least 1024"), "{e}");
}

#[test]
fn plain_http_to_another_machine_needs_allow_insecure_http_and_is_warned_about() {
    let remote = GOOD.replace("https://app.codacy.com", "http://codacy.internal:8080");
    let e = error_for(&remote);
    assert_eq!(e.key, "codacy.base_url");
    assert!(e.message.contains("allow_insecure_http"), "{e}");
    let c = parse(&remote.replace("[codacy]", "[codacy]\nallow_insecure_http = true")).unwrap();
    assert!(c.codacy.allow_insecure_http);
    let w = c.warnings();
    assert!(
        w.len() == 1 && w[0].contains("http://codacy.internal:8080"),
        "{w:?}"
    );
    // Loopback (a local proxy, the simulator) is not the network.
    let local = parse(&GOOD.replace("https://app.codacy.com", "http://127.0.0.1:9000")).unwrap();
    assert!(local.warnings().is_empty());
    assert!(parse(GOOD).unwrap().warnings().is_empty());

    let hook = |extra: &str| {
        format!("{GOOD}\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://siem.internal/x\"\n{extra}")
    };
    let e = error_for(&hook(""));
    assert_eq!(e.key, "sinks[1]", "{e}");
    assert!(
        e.message
            .contains("`url`: http://siem.internal/x is plain http"),
        "{e}"
    );
    assert!(e.message.contains("allow_insecure_http"), "{e}");
    let c = parse(&hook("allow_insecure_http = true")).unwrap();
    let w = c.warnings();
    assert!(
        w.len() == 1 && w[0].contains("\"hook\"") && w[0].contains("http://siem.internal/x"),
        "{w:?}"
    );
}

#[test]
fn elasticsearch_ecs_namespace_follows_the_data_stream() {
    let es = |ds: &str, extra: &str| {
        format!("{}\n[[sinks]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nformat = \"ecs\"\ndata_stream = \"{ds}\"\napi_key_env = \"ES_KEY\"\n{extra}", GOOD)
    };
    let c = parse(&es("logs-codacy.audit-prod", "")).unwrap();
    assert_eq!(c.sinks[1].format_options.ecs_namespace, "prod");
    let e = error_for(&es("logs-codacy.audit-prod", "ecs_namespace = \"default\""));
    assert_eq!(e.key, "sinks[1].ecs_namespace");
    let e = error_for(&es("logs-other-prod", ""));
    assert_eq!(e.key, "sinks[1].data_stream");
}

#[test]
fn missing_token_is_an_error_naming_the_sources() {
    let e = Config::from_toml(GOOD, "t.toml", &TokenSources::default(), false).unwrap_err();
    assert!(e.message.contains(TOKEN_ENV), "{e}");
}

#[test]
fn the_redactor_knows_every_secret_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p.display().to_string()
    };
    let text = format!(
        "{GOOD}\n[[sinks]]\nname = \"bearer\"\ntype = \"http\"\nurl = \"https://h/x\"\n\
         auth = {{ bearer_token_file = \"{}\" }}\n\
         \n[[sinks]]\nname = \"basic\"\ntype = \"http\"\nurl = \"https://h/y\"\n\
         auth = {{ user = \"u\", password_file = \"{}\" }}\n\
         \n[[sinks]]\nname = \"hec\"\ntype = \"splunk_hec\"\nurl = \"https://h:8088\"\ntoken_file = \"{}\"\n\
         \n[[sinks]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\napi_key_file = \"{}\"\n\
         \n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopic = \"t\"\n\
         security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n\
         sasl_password_file = \"{}\"\n",
        file("bearer", "bearer-secret"),
        file("pw", "basic-secret"),
        file("hec", "hec-secret"),
        file("es", "es-api-key-secret"),
        file("kafka", "kafka-secret"),
    );
    let config = Config::from_toml(
        &text,
        "t.toml",
        &TokenSources {
            env: Some("codacy-secret".into()),
            credentials_directory: None,
        },
        false,
    )
    .unwrap();
    let r = config.redactor();
    // base64("u:basic-secret"), what a Basic Authorization header carries.
    for secret in [
        "codacy-secret",
        "bearer-secret",
        "basic-secret",
        "dTpiYXNpYy1zZWNyZXQ=",
        "hec-secret",
        "es-api-key-secret",
        "kafka-secret",
    ] {
        assert_eq!(r.redact(&format!("<{secret}>")), "<[redacted]>", "{secret}");
    }
    assert_eq!(r.redact("archive"), "archive");
}

#[test]
fn token_precedence_env_then_file_then_credentials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api-token"), "from-cred\n").unwrap();
    let file = dir.path().join("tokfile");
    std::fs::write(&file, "from-file\n").unwrap();
    let cred = TokenSources {
        env: None,
        credentials_directory: Some(dir.path().to_path_buf()),
    };
    assert_eq!(token(None, &cred, None).secret.expose(), "from-cred");
    assert_eq!(token(Some(&file), &cred, None).secret.expose(), "from-file");
    assert_eq!(token(Some(&file), &tokens(), None).secret.expose(), "tok");
}

fn token(file: Option<&Path>, sources: &TokenSources, fallback: Option<&Path>) -> FoundToken {
    resolve_token(file, sources, fallback).unwrap()
}

#[test]
fn outside_the_service_the_credential_source_file_is_read_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("api-token");
    std::fs::write(&source, "from-source\n").unwrap();
    let none = TokenSources::default();
    let t = token(None, &none, Some(&source));
    assert_eq!(t.secret.expose(), "from-source");
    assert!(
        t.source.contains(&source.display().to_string()),
        "{}",
        t.source
    );
    // Inside the service, $CREDENTIALS_DIRECTORY is the only credential: no fallback.
    let service = TokenSources {
        env: None,
        credentials_directory: Some(dir.path().join("empty")),
    };
    let e = resolve_token(None, &service, Some(&source)).err().unwrap();
    assert!(e.contains("no API token"), "{e}");
}

#[test]
fn an_unreadable_token_file_next_to_a_credential_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api-token"), "from-cred\n").unwrap();
    let missing = dir.path().join("root-only-token");
    let service = TokenSources {
        env: None,
        credentials_directory: Some(dir.path().to_path_buf()),
    };
    let t = token(Some(&missing), &service, None);
    assert_eq!(t.secret.expose(), "from-cred");
    let w = t.warning.unwrap();
    assert!(
        w.contains("codacy.api_token_file") && w.contains("root-only-token"),
        "{w}"
    );
    // Without any credential it stays an error naming the file.
    let e = resolve_token(Some(&missing), &TokenSources::default(), None)
        .err()
        .unwrap();
    assert!(e.contains("root-only-token"), "{e}");
}

#[test]
fn numbers_in_quotes_or_with_decimals_are_refused_naming_the_key() {
    for (line, words) in [
        ("page_limit = \"100\"", "without quotes"),
        ("page_limit = 100.5", "not a whole number"),
        ("max_attempts = -1", "negative"),
        ("allow_insecure_http = \"yes\"", "without quotes"),
    ] {
        let key = format!("codacy.{}", line.split(' ').next().unwrap());
        let e = error_for(&GOOD.replace("page_limit = 1000", line));
        assert_eq!(e.key, key, "{line}: {e}");
        assert!(e.message.contains(words), "{line}: {e}");
    }
    let c = parse(&GOOD.replace("[codacy]", "[codacy]\nmax_requests_per_second = 2")).unwrap();
    assert_eq!(c.codacy.max_requests_per_second, 2.0);
}

#[test]
fn a_lookback_past_retention_is_echoed_as_written() {
    let e = error_for(&GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""));
    assert!(e.message.starts_with("\"400d\" is longer"), "{e}");
}

#[test]
fn errors_of_a_key_set_by_the_environment_name_the_variable() {
    let overrides = [EnvOverride {
        variable: "CODACY_FORWARDER__AGENT__POLL_INTERVAL".into(),
        key: "agent.poll_interval".into(),
    }];
    let e = blame_environment(
        error_for(&GOOD.replace("poll_interval = \"60s\"", "poll_interval = \"abc\"")),
        &overrides,
    );
    let text = e.to_string();
    assert!(
        text.contains("environment variable CODACY_FORWARDER__AGENT__POLL_INTERVAL")
            && text.contains("\"abc\""),
        "{text}"
    );
    // Another key's error still names the file.
    let e = blame_environment(
        error_for(&GOOD.replace("overlap = \"10m\"", "overlap = \"x\"")),
        &overrides,
    );
    assert_eq!(e.file, "test.toml");
}
