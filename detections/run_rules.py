#!/usr/bin/env python3
"""Runs every Sigma rule in detections/sigma/ over NDJSON the agent wrote (format = "json") with
pySigma's DuckDB backend, and checks what fires.

    detections/run_rules.py --attack ATTACK.ndjson --benign BENIGN.ndjson

ATTACK holds fixture events (detections/tests/attack-day.ndjson, as forwarded by the agent); each
event a rule must catch names that rule in its `_expect` list, which the agent passes through like
any unknown field and no rule reads. A rule must match exactly those events (a correlation rule:
exactly the group-by values of those events), and every generated rule must have some. BENIGN is
a quiet day of logins and analysis changes on which no rule may fire. Exit 1 on any difference.
tests/siem_sigma.rs runs this.
"""
import argparse
import json
import sys
from pathlib import Path

import duckdb
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma_backend_duckdb import DuckDBBackend

RULES = Path(__file__).resolve().parent / "sigma"


def flatten(obj, prefix=""):
    """Nested JSON objects become dotted columns (actor.email), as the DuckDB backend expects;
    arrays and other values become their JSON text."""
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif v is None or isinstance(v, str):
            out[key] = v
        else:
            out[key] = json.dumps(v)
    return out


def table(con, path, columns):
    rows = [flatten(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no events")
    cols = sorted(columns | {k for r in rows for k in r})
    con.execute("DROP TABLE IF EXISTS logs")
    con.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" VARCHAR' for c in cols) + ")")
    con.executemany(
        "INSERT INTO logs VALUES (" + ", ".join("?" for _ in cols) + ")",
        [[r.get(c) for c in cols] for r in rows],
    )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attack", required=True)
    ap.add_argument("--benign", required=True)
    args = ap.parse_args()

    collection = SigmaCollection.load_ruleset([str(p) for p in sorted(RULES.glob("*.yml"))])
    collection.resolve_rule_references()
    backend = DuckDBBackend()
    # Base rules first: a correlation query embeds its base rule's conversion.
    ordered = sorted(collection.rules, key=lambda r: isinstance(r, SigmaCorrelationRule))
    queries = {}
    for rule in ordered:
        if isinstance(rule, SigmaCorrelationRule):
            queries[rule.name] = (rule, backend.convert_correlation_rule(rule)[0])
        else:
            converted = backend.convert_rule(rule)
            if rule.custom_attributes.get("generate") is not False:
                queries[rule.name] = (rule, converted[0])
    columns = {"action", "result", "actor.email", "actor.role", "repositoryName", "source", "organization",
               "event_id", "timestamp", "_expect"}

    con = duckdb.connect()
    failures = []
    attack = table(con, args.attack, columns)
    for name, (rule, sql) in sorted(queries.items()):
        expected = [r for r in attack if name in json.loads(r.get("_expect") or "[]")]
        if not expected:
            failures.append(f"{name}: no event in {args.attack} expects it; add one")
        if isinstance(rule, SigmaCorrelationRule):
            keys = rule.group_by
            result = con.execute(sql)
            names = [d[0] for d in result.description]
            got = {tuple(row[names.index(k)] for k in keys) for row in result.fetchall()}
            want = {tuple(r.get(k) for k in keys) for r in expected}
        else:
            got = {row[0] for row in con.execute(f"SELECT event_id FROM ({sql})").fetchall()}
            want = {r["event_id"] for r in expected}
        status = "ok" if got == want else "FAIL"
        print(f"{status:4} {name}: {len(got)} hit(s) on the attack day")
        if got != want:
            failures.append(f"{name}: fired on {sorted(map(str, got - want))[:5]} it should not, "
                            f"missed {sorted(map(str, want - got))[:5]}\n      {sql}")
    table(con, args.benign, columns)
    for name, (rule, sql) in sorted(queries.items()):
        hits = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        if hits:
            failures.append(f"{name}: fired {hits} time(s) on the benign day\n      {sql}")
    print(f"{len(queries)} rules run; benign day: {'quiet' if not any('benign' in f for f in failures) else 'NOT quiet'}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
