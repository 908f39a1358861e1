//! Helper for `bench/run.sh` (not shipped): serves the embedded Codacy simulator with a generated
//! backlog, dumps the pages it serves (for the jq baseline), and runs the bare serde_json reference.
//!
//! ```text
//! bench serve --events N --orgs K --dir DIR   # writes DIR/base_url when ready; runs until killed
//!   [--events-per-org M]   # also M recent events in every organization (the scale run)
//!   [--produce-every-ms T] # new events "now" in gh/bench-0 every T ms (the isolation run)
//!   DIR/stats is rewritten every second: `requests <n> max_in_flight <n>`
//! bench dump --base-url URL --org gh/bench-0 --from MS --to MS --dir DIR
//! bench reference --base-url URL --org gh/bench-0 --from MS --to MS --out FILE
//! ```
//! `dump` writes DIR/pages/page-NNNNN.json (the envelopes exactly as served, following cursors) and
//! DIR/events.ndjson (the same events, one per line, for `preview` and jq).

use clap::{Parser, Subcommand};
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;

const TOKEN: &str = "bench-token";
const DAY_MS: i64 = 86_400_000;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate events spread over the last ~360 days into `orgs` organizations and serve them.
    Serve {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Organizations gh/bench-0 .. gh/bench-{K-1}; the events go to gh/bench-0.
        #[arg(long, default_value_t = 1)]
        orgs: usize,
        /// Also this many events of the last hour in every organization.
        #[arg(long, default_value_t = 0)]
        events_per_org: usize,
        /// Keep adding events stamped "now" to gh/bench-0 this often (ms); 0: never.
        #[arg(long, default_value_t = 0)]
        produce_every_ms: u64,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Follow the cursors of one window and store every page as served.
    Dump {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Bare reference: fetch the same pages over HTTP, parse with serde_json, write NDJSON.
    Reference {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Deserialize)]
struct Envelope {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    cursor: Option<String>,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Res<()> {
    match Args::parse().command {
        Cmd::Serve {
            events,
            orgs,
            events_per_org,
            produce_every_ms,
            dir,
        } => serve(events, orgs, events_per_org, produce_every_ms, dir).await,
        Cmd::Dump {
            base_url,
            org,
            from,
            to,
            dir,
        } => dump(&base_url, &org, from, to, &dir).await,
        Cmd::Reference {
            base_url,
            org,
            from,
            to,
            out,
        } => reference(&base_url, &org, from, to, &out).await,
    }
}

async fn serve(
    events: usize,
    orgs: usize,
    events_per_org: usize,
    produce_every_ms: u64,
    dir: PathBuf,
) -> Res<()> {
    let sim = Simulator::new(TOKEN);
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..orgs.max(1) {
        let org = OrgRef::new(Provider::Gh, format!("bench-{i}"));
        sim.add_org(&org);
        if events_per_org > 0 {
            sim.push_events(
                &org,
                generate_events(
                    i as u64,
                    events_per_org,
                    now - 3_600_000,
                    now - 60_000,
                    &GenOptions::default(),
                ),
            );
        }
    }
    let org = OrgRef::new(Provider::Gh, "bench-0");
    // In chunks so the generated Values never all live at once next to their serialized copies.
    let chunk = 100_000;
    let span = 360 * DAY_MS;
    let (from, to) = (now - span - 60_000, now - 60_000);
    let mut done = 0;
    let mut seed = 1;
    while done < events {
        let n = chunk.min(events - done);
        let lo = from + span * done as i64 / events.max(1) as i64;
        let hi = from + span * (done + n) as i64 / events.max(1) as i64;
        sim.push_events(
            &org,
            generate_events(seed, n, lo, hi.max(lo + 1).min(to), &GenOptions::default()),
        );
        done += n;
        seed += 1;
    }
    let server = sim.serve().await?;
    let _producer = (produce_every_ms > 0).then(|| {
        sim.spawn_producer(
            &org,
            std::time::Duration::from_millis(produce_every_ms),
            codacy_audit_forwarder::clock::system(),
        )
    });
    let stats_sim = sim.clone();
    let stats_dir = dir.clone();
    tokio::spawn(async move {
        loop {
            let line = format!(
                "requests {} max_in_flight {}\n",
                stats_sim.request_count(),
                stats_sim.max_in_flight()
            );
            let _ = std::fs::write(stats_dir.join("stats.tmp"), line).and_then(|()| {
                std::fs::rename(stats_dir.join("stats.tmp"), stats_dir.join("stats"))
            });
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    std::fs::write(dir.join("base_url.tmp"), &server.base_url)?;
    std::fs::rename(dir.join("base_url.tmp"), dir.join("base_url"))?;
    eprintln!(
        "bench simulator: {} events at {}",
        sim.event_count(&org),
        server.base_url
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(server);
    Ok(())
}

/// Walks one window with `limit=1000`, calling `page` with every raw body.
async fn walk(
    base_url: &str,
    org: &str,
    from: i64,
    to: i64,
    mut page: impl FnMut(&[u8], &Envelope) -> Res<()>,
) -> Res<()> {
    let client = reqwest::Client::new();
    let url = format!("{base_url}/api/v3/organizations/{org}/audit");
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("limit", "1000".to_string()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let body = client
            .get(&url)
            .header("api-token", TOKEN)
            .query(&query)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let env: Envelope = serde_json::from_slice(&body)?;
        page(&body, &env)?;
        match env.pagination.and_then(|p| p.cursor) {
            Some(c) if !env.data.is_empty() => cursor = Some(c),
            _ => return Ok(()),
        }
    }
}

async fn dump(base_url: &str, org: &str, from: i64, to: i64, dir: &std::path::Path) -> Res<()> {
    let pages = dir.join("pages");
    std::fs::create_dir_all(&pages)?;
    let mut ndjson = std::io::BufWriter::new(std::fs::File::create(dir.join("events.ndjson"))?);
    let mut n = 0usize;
    let mut events = 0usize;
    walk(base_url, org, from, to, |body, env| {
        n += 1;
        std::fs::write(pages.join(format!("page-{n:05}.json")), body)?;
        for e in &env.data {
            serde_json::to_writer(&mut ndjson, e)?;
            ndjson.write_all(b"\n")?;
            events += 1;
        }
        Ok(())
    })
    .await?;
    ndjson.flush()?;
    println!("{n} pages, {events} events");
    Ok(())
}

async fn reference(
    base_url: &str,
    org: &str,
    from: i64,
    to: i64,
    out: &std::path::Path,
) -> Res<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    walk(base_url, org, from, to, |_, env| {
        for e in &env.data {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
    .await?;
    w.flush()?;
    w.get_ref().sync_all()?;
    Ok(())
}
