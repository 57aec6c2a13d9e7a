"""The alerts and the workbook in infra/ read what the relay emits: every metric name they query is
one the code records, every dimension value they compare is one the code can set, every alert the
operators were promised is there with a name and a description, and the action group exists only
with an e-mail address. The same checks are shown to fail on broken copies of infra/."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shared import metrics
from tests.conftest import INDEXED
from tests.infra_model import (
    APP_INSIGHTS,
    INFRA,
    MAIN,
    Template,
    copy_infra,
    dotted,
    edit,
    follow,
    load,
)
from tests.metrics_reader import Meter, meter_fixture  # noqa: F401

ALERTS = "modules/alerts.bicep"
WORKBOOK = "modules/workbook.bicep"
RULE = "Microsoft.Insights/scheduledQueryRules"
ACTION_GROUP = "Microsoft.Insights/actionGroups"
WORKBOOK_TYPE = "Microsoft.Insights/workbooks"

# Dimension -> the values the code can give it.
DIMENSIONS = {
    "route": set(metrics.ROUTES),
    "outcome": set(metrics.OUTCOMES),
    "result": set(metrics.CIJ_RESULTS) | {"ok", "failed"},
    "queue": set(metrics.QUEUES),
}
# What each promised alert must look at: (metric, dimension, value).
PROMISED = {
    ("relay.queue.depth", "queue", "poison"),
    ("relay.queue.depth", "queue", "pending"),
    ("relay.events", "outcome", "unavailable"),
    ("relay.events", "outcome", "misconfigured"),
    ("relay.target.refreshes", "result", "failed"),
}

_NAME = re.compile(r'\bname\s*==\s*"([^"]+)"')
_DIMENSION = re.compile(r'customDimensions\["(\w+)"\]\)?\s*==\s*"([^"]*)"')


def emitted_names(meter: Meter) -> set[str]:
    """The metric names the code records, as a meter provider receives them."""
    metrics.count_reply("events", type("R", (), {"status": 202, "headers": {}, "body": None})())
    metrics.CIJ_DURATION.record(0.1, {"result": "2xx"})
    metrics.target_refreshed(True)
    metrics.queue_depth("pending", 0)
    return meter.read().names


def text_of(t: Template, file: str, value: Any) -> str:
    """A string value of `file`: a literal, a variable, or replace() of one (placeholders left in)."""
    variables = t.doc(file).get("variables", {})
    if isinstance(value, str):
        return text_of(t, file, variables[value]["value"]) if value in variables else value
    function = value.get("function", {}) if isinstance(value, dict) else {}
    if function.get("type") == "replace":
        return text_of(t, file, function["parameters"]["original_string"])
    raise AssertionError(f"{file}: cannot read the query {value!r}")


def alert_queries(t: Template) -> list[dict[str, Any]]:
    """Each alert rule of alerts.bicep (one rule per item of its `rules` variable), query resolved."""
    rules = t.doc(ALERTS)["variables"]["rules"]["value"]
    return [{**rule, "query": text_of(t, ALERTS, rule["query"])} for rule in rules]


def workbook_queries(t: Template) -> list[str]:
    """The KQL of every item of the workbook the template deploys."""
    [(file, _, workbook)] = t.resources(WORKBOOK_TYPE)
    data = json.dumps(workbook["properties"]["serializedData"])
    [name] = re.findall(r'"file_path": "([^"]+)"', data)
    content = json.loads((t.root / PurePosixPath(file).parent / name).read_text())
    return [item["content"]["query"] for item in content["items"] if "query" in item.get("content", {})]


def check_queries(queries: list[str], names: set[str], where: str) -> list[str]:
    """Problems: metric names the code does not emit, dimension values it cannot set."""
    problems = []
    functions = {f.get_function_name() for f in INDEXED}
    for query in queries:
        table = query.split("\n", 1)[0].strip()
        found = _NAME.findall(query)
        if table == "customMetrics":
            problems += [
                f"{where}: metric {n!r} is not emitted by the relay" for n in found if n not in names
            ]
            if not found:
                problems.append(f"{where}: a customMetrics query names no metric")
        elif table == "requests":
            problems += [f"{where}: no function named {n!r}" for n in found if n not in functions]
        for key, value in _DIMENSION.findall(query):
            if value not in DIMENSIONS.get(key, set()):
                problems.append(f"{where}: customDimensions[{key!r}] is never {value!r}")
    return problems


def check_alerts(t: Template, names: set[str]) -> list[str]:
    rules = alert_queries(t)
    problems = check_queries([r["query"] for r in rules], names, ALERTS)
    covered = {
        (metric, key, value)
        for r in rules
        for metric in _NAME.findall(r["query"])
        for key, value in _DIMENSION.findall(r["query"])
    }
    problems += [f"no alert on {m} with {k}={v}" for m, k, v in sorted(PROMISED - covered)]
    for r in rules:
        if len(str(r.get("displayName", ""))) < 10 or len(str(r.get("description", ""))) < 40:
            problems.append(f"alert {r['name']} needs a clear display name and a description of what to do")
    groups = [(f, s, r) for f, d in t.files.items() for s, r in d.get("resources", {}).items()]
    groups = [(f, r) for f, s, r in groups if r["type"] == ACTION_GROUP]
    if len(groups) != 1 or "alertEmail" not in json.dumps(groups[0][1]["config"].get("condition")):
        problems.append("exactly one action group, deployed only when alertEmail is set")
    for _, _, rule in t.resources(RULE):
        actions = json.dumps(rule["properties"].get("actions"))
        if "alertEmail" not in actions or "actionGroup" not in actions:
            problems.append("alerts must send to the action group when there is one, to none otherwise")
    return problems


def check_workbook(t: Template, names: set[str]) -> list[str]:
    queries = workbook_queries(t)
    problems = check_queries(queries, names, WORKBOOK)
    shown = {n for q in queries for n in _NAME.findall(q)}
    problems += [f"the workbook does not show {n}" for n in sorted(names - shown)]
    return problems


@pytest.fixture
def names(meter: Meter) -> set[str]:
    found = emitted_names(meter)
    assert found == {"relay.events", "relay.cij.duration", "relay.target.refreshes", "relay.queue.depth"}
    return found


def test_alerts_query_only_what_the_relay_emits(names):
    assert check_alerts(load(), names) == []


def test_workbook_queries_only_what_the_relay_emits_and_shows_all_of_it(names):
    assert check_workbook(load(), names) == []


def test_alert_email_is_an_optional_parameter_azd_can_set():
    main = load().doc(MAIN)
    assert main["parameters"]["alertEmail"]["default"] == ""
    mapping = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["alertEmail"]["value"]
    assert mapping == "${AZURE_ALERT_EMAIL}"


def test_the_unavailable_threshold_is_a_parameter():
    t = load()
    [rule] = [r for r in alert_queries(t) if "unavailable" in r["query"]]
    assert rule["threshold"] == "unavailableSharePercent"
    assert t.doc(MAIN)["parameters"]["unavailableAlertPercent"]["default"] == 5


def test_each_alert_rule_is_scoped_to_application_insights():
    t = load()
    rules = t.resources(RULE)
    assert rules
    for file, _, rule in rules:
        [scope] = rule["properties"]["scopes"]
        ref = follow(t, file, dotted(scope).rsplit(".", 1)[0])
        assert ref.rtype == APP_INSIGHTS, file
        # ...the component main.bicep creates: the module is given the monitoring module's output.
        created = t.one(APP_INSIGHTS)
        assert follow(t, file, "appInsightsName") == follow(t, created[0], created[2]["name"])


# --------------------------------------------------------------------------------------------
# The checks bite.


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (ALERTS, '"relay.queue.depth" and tostring(customDimensions["queue"]) == "poison"',
         '"relay.queue.length" and tostring(customDimensions["queue"]) == "poison"', "'relay.queue.length'"),
        (ALERTS, '== "misconfigured"', '== "misconfiguration"', "'misconfiguration'"),
        (ALERTS, '["result"]) == "failed"), ok', '["status"]) == "failed"), ok', "'status'"),
        (ALERTS, "displayName: 'CIJ relay: Key Vault reads failing'", "displayName: ''", "display name"),
        (ALERTS, "= if (!empty(alertEmail)) {", "= {", "only when alertEmail"),
        ("modules/relay.workbook.json", '\\"relay.target.refreshes\\"', '\\"relay.target.reads\\"',
         "'relay.target.reads'"),
    ],
)  # fmt: skip
def test_a_broken_copy_is_reported(tmp_path: Path, names, file, old, new, expected):
    copy = copy_infra(tmp_path)
    edit(copy, file, lambda text: text.replace(old, new, 1))
    t = load(copy)
    problems = check_alerts(t, names) + check_workbook(t, names)
    assert any(expected in p for p in problems), problems


def test_a_promised_alert_removed_is_reported(tmp_path: Path, names):
    copy = copy_infra(tmp_path)
    edit(
        copy,
        ALERTS,
        lambda text: re.sub(r"\n  \{\n    name: 'key-vault-reads-failing'.*?\n  \}", "", text, flags=re.S),
    )
    assert "no alert on relay.target.refreshes with result=failed" in check_alerts(load(copy), names)
