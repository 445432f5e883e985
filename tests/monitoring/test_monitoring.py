"""Alerts and the dashboard as code: promtool's own unit tests for the rules, and every PromQL
expression (alerts and dashboard panels) checked by promtool and against the metric families the
real app exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "dashboard.json"
# A metric name in PromQL: an identifier not followed by "(" (functions), not a keyword/label.
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "by", "without", "and", "or",
    "unless", "histogram_quantile", "le", "on", "ignoring", "group_left", "group_right",
    "bool", "offset",
}  # fmt: skip
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs Debian's prometheus package"
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def _alert_exprs() -> list[str]:
    # The rules file is YAML; promtool validates it, here we only need each `expr:` block.
    text = ALERTS.read_text()
    exprs = []
    for match in re.finditer(r"^ {8}expr: (>-\n((?: {10}.*\n)+)|(.*)\n)", text, re.M):
        exprs.append(" ".join(match.group(2).split()) if match.group(2) else match.group(3))
    return exprs


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_ranges = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_ranges):
        word = match.group(1)
        if word not in _PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", word):
            names.add(word)
    return names


def _family(name: str) -> str:
    for suffix in (*_HISTOGRAM_SUFFIXES, "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _promtool()
    check = _run(promtool, "check", "rules", ALERTS.name, cwd=MONITORING)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = _run(promtool, "test", "rules", "alerts.test.yml", cwd=MONITORING)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    alerts = set(re.findall(r"^ {6}- alert: (\S+)", ALERTS.read_text(), re.M))
    assert len(alerts) >= 6, alerts
    tested = (MONITORING / "alerts.test.yml").read_text()
    for alert in alerts:
        firing = re.search(
            rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels", tested
        )  # an expectation that it fires, not only that it stays silent
        assert firing, f"{alert} has no promtool test in which it fires"


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("slot state", "health", "heartbeats", "latency", "sweep", "mode", "feed"):
        assert topic in titles, f"the dashboard has no panel about {topic}"
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert any(v["name"] == "datasource" for v in dash["templating"]["list"])


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules), so a typo cannot ship."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_dashboard_exprs()):
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    check = _run(_promtool(), "check", "rules", rules.name, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_referenced_metric_is_exported(client: httpx.Client, source: str) -> None:
    # A heartbeat (refused, 401) makes the per-route request series appear.
    assert client.post("/v1/runtime-nodes/monitoring-probe/heartbeat", json={}).status_code == 401
    exported = {
        _family(line.split("{")[0].split(" ")[0])
        for line in client.get("/metrics").text.splitlines()
        if line and not line.startswith("#")
    }
    exprs = _alert_exprs() if source == "alerts" else _dashboard_exprs()
    assert exprs
    referenced = {_family(name) for expr in exprs for name in _metric_names(expr)}
    assert referenced, exprs
    missing = sorted(referenced - exported)
    assert not missing, f"{source} reference metrics the app does not export: {missing}"
