"""The alerting rules, conf/prometheus/adaptive.rules.yml: promtool checks them and runs their unit tests
(adaptive.rules.test.yml); every metric, label and label value they select is one adaptive exports (the
exposition test_metrics makes), so a renamed metric breaks them here; each alert has its tests, firing
and not, and its panel on the dashboard; red on the dashboard names the alert it stands for.
tests/test_prometheus.py loads the rules into a real Prometheus and has each evaluated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from test_metrics import dashboard, full_exposition

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "conf" / "prometheus" / "adaptive.rules.yml"
RULE_TESTS = ROOT / "conf" / "prometheus" / "adaptive.rules.test.yml"
TARGET = {"job", "instance"}        # the labels Prometheus gives every series it scrapes
SEVERITIES = {"critical", "warning"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (apt install prometheus)")


def alerts() -> list[dict]:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    return group["rules"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


# --- promtool ---

@needs_promtool
def test_promtool_checks_the_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


@needs_promtool
def test_promtool_runs_the_unit_tests_of_the_rules():
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_each_alert_is_tested_firing_and_not_firing():
    tests = [t for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case["alert_rule_test"]]
    for rule in alerts():
        mine = [t for t in tests if t["alertname"] == rule["alert"]]
        assert any(t["exp_alerts"] for t in mine), f"{rule['alert']} is never tested firing"
        assert any(not t["exp_alerts"] for t in mine), f"{rule['alert']} is never tested not firing"


def test_each_alert_waits_has_a_severity_and_names_a_command_to_run():
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        assert rule["alert"].startswith("Adaptive") and rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert re.search(r"`(adaptive|journalctl|systemctl) \w", rule["annotations"]["description"]), rule["alert"]


# --- the names the rules select ---

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
SELECTOR = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers less functions, keywords, label
    matchers, grouping labels and durations."""
    bare = GROUPING.sub(" ", re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr))
    return {name for name in re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", bare)
            if name not in KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", name)}


def test_metric_names_are_read_from_an_expression():
    expr = ('sum by (job, instance) (rate(a_total{outcome="ban", x=~"y|z"}[10m] offset 1h)) * 60 > 1e3 and '
            "abs(b - on (job) c) > 0.01 * d unless absent(up)")
    assert metric_names(expr) == {"a_total", "b", "c", "d", "up"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """Each sample name adaptive exports -> its labels -> the values they take (a daemon that has
    banned, a manual ban, the kernel's figures: every family)."""
    names: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(full_exposition(tmp_path_factory.mktemp("exposition"))):
        for sample in family.samples:
            labels = names.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return names


def test_the_rules_select_only_metrics_adaptive_exports(exported):
    for rule in alerts():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        if "up" in used:                # Prometheus' own, of the scrape job the README configures
            assert rule["alert"] == "AdaptiveDown" and 'up{job="adaptive"}' in rule["expr"]
            used.discard("up")
        assert used <= set(exported), f"{rule['alert']}: {used - set(exported)} not exported"


def test_the_rules_match_only_labels_and_values_adaptive_exports(exported):
    for rule in alerts():
        known = set(TARGET)
        for name, matchers in SELECTOR.findall(rule["expr"]):
            labels = exported.get(name, {})
            known |= set(labels)
            for label, op, value in MATCHER.findall(matchers):
                if name == "up" or label in TARGET:
                    continue
                assert label in labels, f"{rule['alert']}: {name} has no label {label}"
                if op in ("=", "!="):
                    assert value in labels[label], f"{rule['alert']}: {name}{{{label}}} is never {value!r}"
                else:
                    assert any(re.fullmatch(value, v) for v in labels[label]), f"{rule['alert']}: {value!r}"
        for names in GROUPING.findall(rule["expr"]):
            grouped = {n.strip() for n in names.split(",") if n.strip()}
            assert grouped <= known, f"{rule['alert']}: grouped by {grouped - known}"


# --- the dashboard ---

def alert_row() -> list[dict]:
    """The panels of the dashboard's "Alerts" row, in order."""
    panels = dashboard()["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Alerts")
    end = next((i for i, p in enumerate(panels) if i > start and p["type"] == "row"), len(panels))
    return panels[start + 1:end]


def reds(panel: dict) -> list[dict]:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    return [s for s in steps if s["color"] == "red"]


def test_each_alert_has_its_panel_in_the_alerts_row():
    row = alert_row()
    for rule in alerts():
        panels = [p for p in row if re.search(rf"\b{rule['alert']}\b", p.get("description", ""))]
        assert len(panels) == 1, f"{rule['alert']}: {[p['title'] for p in panels]}"
        assert reds(panels[0]), f"{rule['alert']}: its panel {panels[0]['title']!r} never turns red"


def test_red_on_the_dashboard_names_the_alert_it_stands_for():
    names = {rule["alert"] for rule in alerts()}
    for panel in dashboard()["panels"]:
        if panel["type"] in ("stat", "gauge", "bargauge"):
            # Grafana's default thresholds turn a value red at 80: 80 bans is no alarm.
            assert "thresholds" in panel["fieldConfig"]["defaults"], panel["title"]
        if reds(panel):
            named = set(re.findall(r"\bAdaptive[A-Z]\w+", panel.get("description", "")))
            assert named and named <= names, f"{panel['title']}: red stands for {named or 'no alert'}"
