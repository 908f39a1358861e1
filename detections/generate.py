#!/usr/bin/env python3
"""Converts the Sigma rules in detections/sigma/ into the queries each SIEM runs.

    detections/generate.py           write detections/{splunk,elastic,sentinel}/
    detections/generate.py --check   exit 1 when a committed query differs from what the rules give
                                     (tests/siem_sigma.rs runs this) or a rule lacks required keys

Outputs, one file per rule that generates a query (rules with `generate: false` are the building
blocks of correlation rules):
    splunk/<rule>.spl         SPL over the TA-codacy-audit fields (eventtype=codacy_audit, codacy_action,
                              codacy_result, user), any format the add-on reads
    elastic/<rule>.lucene     Lucene over ECS documents (format = "ecs") in logs-codacy.audit-*;
                              a correlation rule gives its base query plus the threshold for a Kibana
                              threshold rule (Lucene has no aggregations)
    elastic/<rule>.esql       ES|QL over the same documents
    sentinel/<rule>.kql       KQL over CommonSecurityLog (format = "cef" through the AMA CEF connector);
                              a correlation becomes `summarize ... by bin(TimeGenerated, span)` here
                              because pySigma's Kusto backend has no correlation support

Field mapping per SIEM (the rules use the agent's `json` format field names):
"""
import argparse
import sys
from pathlib import Path

import yaml
from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.backends.kusto import KustoBackend
from sigma.backends.splunk import SplunkBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    FieldMappingTransformation,
    FieldPrefixMappingTransformation,
    MapStringTransformation,
    SetStateTransformation,
)
from sigma.processing.conditions import IncludeFieldCondition

HERE = Path(__file__).resolve().parent
RULES = HERE / "sigma"
REQUIRED = ("title", "id", "name", "description", "level", "tags", "falsepositives")

# json-format field -> field in the SIEM.
SPLUNK_FIELDS = {  # calculated by packaging/splunk/TA-codacy-audit (props.conf)
    "action": "codacy_action",
    "result": "codacy_result",
    "actor.email": "user",
    "actor.role": "user_role",
    "repositoryName": "repository",
    "source": "src_type",
}
ECS_FIELDS = {  # src/format/ecs.rs, docs/formats.md
    "action": "event.action",
    "result": "codacy.audit.result",
    "actor.email": "user.email",
    "actor.role": "codacy.audit.role",
    "repositoryName": "codacy.audit.repository",
    "entityId": "codacy.audit.entity_id",
    "source": "codacy.audit.source",
    "organization": "organization.name",
}
CEF_FIELDS = {  # src/format/cef.rs mapped to CommonSecurityLog columns by Sentinel
    "action": "DeviceEventClassID",
    "result": "EventOutcome",  # outcome=success|failure (values mapped below)
    "actor.email": "SourceUserName",
    "actor.role": "DeviceCustomString2",
    "repositoryName": "DeviceCustomString1",
    "entityId": "DeviceCustomString3",
    "source": "DeviceCustomString5",
    "organization": "DeviceCustomString6",
}
__doc__ += "".join(
    f"    {k:16} splunk {SPLUNK_FIELDS.get(k, k):12} ecs {ECS_FIELDS.get(k, k):26} cef {CEF_FIELDS.get(k, k)}\n"
    for k in CEF_FIELDS
)


# CEF's outcome says success/failure instead of Codacy's succeed/failed/rejected.
CEF_RESULTS = {"succeed": "success", "failed": "failure", "rejected": "failure"}


def pipeline(name, fields, condition=None, state=None, prefix=None, values=None):
    items = []
    if values:  # before the field mapping: conditions name the rule's own fields
        items.append(ProcessingItem(MapStringTransformation(values["map"]), identifier=f"{name}_values",
                                    field_name_conditions=[IncludeFieldCondition(values["fields"])]))
    if state:
        items += [ProcessingItem(SetStateTransformation(k, v), identifier=f"{name}_state_{k}") for k, v in state.items()]
    if condition:
        items.append(ProcessingItem(AddConditionTransformation(condition, name=name.replace(" ", "_") + "_source"), identifier=f"{name}_source"))
    items.append(ProcessingItem(FieldMappingTransformation(fields), identifier=f"{name}_fields"))
    if prefix:
        items.append(ProcessingItem(FieldPrefixMappingTransformation(prefix), identifier=f"{name}_prefix"))
    return ProcessingPipeline(name=name, priority=20, items=items)


def backends():
    splunk = pipeline("codacy splunk", SPLUNK_FIELDS, {"eventtype": "codacy_audit"})
    ecs = lambda: pipeline(  # noqa: E731
        "codacy ecs", ECS_FIELDS, {"event.dataset": "codacy.audit"},
        state={"index": "logs-codacy.audit-*"}, prefix={"details.": "codacy.audit.details."})
    cef = pipeline("codacy sentinel", CEF_FIELDS, {"DeviceVendor": "Codacy", "DeviceProduct": "Codacy"},
                   values={"fields": ["result"], "map": CEF_RESULTS})
    return [
        ("splunk", "spl", SplunkBackend(splunk)),
        ("elastic", "lucene", LuceneBackend(ecs())),
        ("elastic", "esql", ESQLBackend(ecs())),
        ("sentinel", "kql", KustoBackend(cef)),
    ]


def load():
    files = sorted(RULES.glob("*.yml"))
    problems = []
    for f in files:
        doc = yaml.safe_load(f.read_text())
        for key in REQUIRED:
            if not doc.get(key):
                problems.append(f"{f.name}: missing {key}")
        if doc.get("name") != f.stem:
            problems.append(f"{f.name}: name must be the file name ({f.stem})")
        if "correlation" not in doc and doc.get("logsource") != {"product": "codacy", "service": "audit"}:
            problems.append(f"{f.name}: logsource must be product: codacy, service: audit")
    collection = SigmaCollection.load_ruleset([str(f) for f in files])
    collection.resolve_rule_references()
    return collection, problems


def render(ext, backend, rule):
    """The file text for one rule in one backend (base rules of a correlation are converted first)."""
    prefix, suffix = ("//", "") if ext in ("kql", "esql", "lucene") else ("```", " ```")
    note = ""
    if isinstance(rule, SigmaCorrelationRule):
        try:
            queries = backend.convert_correlation_rule(rule)
        except NotImplementedError:
            # Lucene and Kusto cannot aggregate in pySigma: the base query plus the threshold.
            (base,) = [r.rule for r in rule.rules]
            queries = base.get_conversion_result()
            op = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "=="}[rule.condition.op.name.lower()]
            span, count = int(rule.timespan.seconds), rule.condition.count
            if ext == "kql":
                by = ", ".join(CEF_FIELDS.get(f, f) for f in rule.group_by)
                queries = [f"{q}\n| summarize event_count = count() by bin(TimeGenerated, {span}s), {by}\n| where event_count {op} {count}" for q in queries]
            else:
                by = ", ".join(ECS_FIELDS.get(f, f) for f in rule.group_by)
                note = f"Kibana threshold rule: group by {by}; alert when the count {op} {count} within {span}s"
    else:
        queries = backend.convert_rule(rule)
    if ext == "kql":
        # The table a query runs on (pySigma adds it only when converting whole collections).
        queries = [f"CommonSecurityLog\n| where {q}" for q in queries]
    lines = [rule.title, f"id: {rule.id}  level: {rule.level.name.lower()}  source: detections/sigma/{rule.name}.yml"]
    if note:
        lines.append(note)
    return "".join(f"{prefix} {line}{suffix}\n" for line in lines) + "\n".join(queries) + "\n"


def outputs():
    _, problems = load()
    out = {}
    for backend_dir, ext, backend in backends():
        # A fresh collection per backend: pipelines transform the rules in place.
        collection, _ = load()
        # Base rules first: a correlation reads their conversion results.
        rules = sorted(collection.rules, key=lambda r: isinstance(r, SigmaCorrelationRule))
        for rule in rules:
            text = render(ext, backend, rule)
            if rule.custom_attributes.get("generate") is False:
                continue  # only a building block of a correlation rule
            out[HERE / backend_dir / f"{rule.name}.{ext}"] = text
    return out, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail when the committed queries are stale")
    args = ap.parse_args()
    out, problems = outputs()
    for p in problems:
        print(f"rule problem: {p}", file=sys.stderr)
    dirs = {p.parent for p in out}
    existing = {p for d in dirs for p in d.glob("*") if p.is_file()}
    stale = sorted(str(p.relative_to(HERE)) for p, text in out.items() if not p.exists() or p.read_text() != text)
    extra = sorted(str(p.relative_to(HERE)) for p in existing - set(out))
    if args.check:
        for s in stale:
            print(f"stale: detections/{s}", file=sys.stderr)
        for e in extra:
            print(f"not generated by any rule: detections/{e}", file=sys.stderr)
        if stale or extra or problems:
            print("regenerate with: detections/generate.py (in the venv of detections/requirements.txt)", file=sys.stderr)
            return 1
        print(f"{len(out)} queries from {len(list(RULES.glob('*.yml')))} rules are up to date")
        return 0
    if problems:
        return 1
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for e in extra:
        (HERE / e).unlink()
    for p, text in out.items():
        p.write_text(text)
    print(f"wrote {len(out)} queries ({len(stale)} changed, {len(extra)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
