"""The dashboard against a real Prometheus scraping a real daemon: every expression returns data.

`srv`, a throwaway network namespace, runs `adaptive run` (metrics on 127.0.0.1:9469 there) and Debian's
Prometheus (on 127.0.0.1:9090 there, scraping every second, its data in the test's temporary
directory); `cli` connects from another namespace. The daemon is fed attack lines (a ban), an ignored
and an unparsable line; the banned source and an over-limit one connect to two rate-limited ports;
the daemon's host makes an outbound SMTP connection to a non-relay; a manual ban and unban go through
the CLI. Once every drop counter has moved in Prometheus, and two more scrapes have come, each PromQL
expression of grafana/adaptive.json (panels and variables) is evaluated through the HTTP API and must
return a non-empty result. `promtool check metrics` passes the live exposition. The alerting rules
(conf/prometheus/adaptive.rules.yml) are loaded as the README says: each is evaluated without error,
and none is raised by this healthy daemon.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from configs import write_local
from netns import PYTHON, Namespaces, connect, missing, serve, wait_for
from test_alerts import RULES, alerts
from test_metrics import dashboard, exprs

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "adaptive.toml"
METRICS, PROMETHEUS = "127.0.0.1:9469", "127.0.0.1:9090"
# Grafana's variables, as a dashboard of the last hour with every instance selected would have them.
VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$instance": ".+"}

_missing = missing("prometheus", "promtool")
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)


# --- run by the worker inside srv ---

def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def query(expr: str) -> dict:
    """Prometheus' answer to an instant query at now (its `data`, or the error as `{"error": ...}`)."""
    url = f"http://{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.loads(fetch(url))
    except urllib.error.HTTPError as e:
        answer = json.loads(e.read().decode())
    except OSError as e:
        return {"error": str(e)}
    return answer["data"] if answer.get("status") == "success" else {"error": answer.get("error", answer)}


# --- the test ---

def line(text: str) -> str:
    return f"{time.strftime('%b %d %H:%M:%S')} mx {text}\n"


def failure(ip: str) -> str:
    return line(f"postfix/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


def test_every_dashboard_expression_returns_data_from_a_real_prometheus(tmp_path):
    log = tmp_path / "mail.log"
    log.touch()
    local = write_local(tmp_path, listen=METRICS, extra="""
[rate_limit]
ports = [{ port = 25, rate = "1/minute", burst = 2 }, { port = 143, rate = "1/minute", burst = 2 }]
[outbound]
enabled = true
relays = ["192.0.2.250"]
""")
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: adaptive
    static_configs:
      - targets: ["{METRICS}"]
""")
    processes: list[subprocess.Popen] = []
    with Namespaces("adm") as nets:
        srv, cli = nets.add("srv"), nets.add("cli")
        devices = nets.veth(srv, cli, ["192.0.2.1/24"], ["192.0.2.2/24", "192.0.2.3/24"])
        nets.pin_neighbours(srv, devices[0], cli, devices[1])
        srv.call(serve, [25, 143])

        def start(name: str, *command: str) -> Path:
            out = tmp_path / f"{name}.out"
            processes.append(subprocess.Popen(["ip", "netns", "exec", srv.name, *command],
                                              stdout=open(out, "ab"), stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL))
            return out

        def adaptive(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(PYTHON), "-m", "adaptive", *args, "--socket", str(tmp_path / "control.sock")],
                                  capture_output=True, text=True, timeout=60)

        daemon_out = start("adaptive", str(PYTHON), "-m", "adaptive", "run", "-c", str(SHIPPED), "-c", str(local),
                           "--dropins", "")
        prometheus_out = start("prometheus", "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={PROMETHEUS}",
                               "--log.level=warn")

        def said() -> str:
            return "\n".join(f"--- {p.name} ---\n{p.read_text()[-3000:]}" for p in (daemon_out, prometheus_out))

        def has(expr: str) -> bool:
            return bool(srv.call(query, expr).get("result"))

        try:
            assert wait_for(lambda: has('up{job="adaptive"} == 1'), timeout=60), said()

            # Lines: an attack (a ban), another kind, an ignored line, a line in no known format.
            with open(log, "a") as f:
                f.write("".join(failure("192.0.2.3") for _ in range(5))
                        + line("postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[192.0.2.5]: 550 5.1.1 "
                               "<nobody@example.org>: Recipient address rejected: User unknown in local "
                               "recipient table; from=<a@example.com> to=<nobody@example.org> proto=ESMTP helo=<x>")
                        + line("postfix/smtpd[1]: lost connection after DATA (120 bytes) from x[192.0.2.9]")
                        + "not a log line\n")
            assert wait_for(lambda: cli.call(connect, "192.0.2.3", "192.0.2.1", 25, 0.3) != "connected",
                            timeout=10), said()
            # Traffic: the banned source again, an over-limit source on both limited ports, and mail
            # sent out around the relay.
            cli.call(connect, "192.0.2.3", "192.0.2.1", 143, 0.3)
            for port in (25, 143):
                results = [cli.call(connect, "192.0.2.2", "192.0.2.1", port, 0.3) for _ in range(4)]
                assert results[:2] == ["connected", "connected"] and "connected" not in results[2:], results
            assert srv.call(connect, "192.0.2.1", "192.0.2.2", 25, 0.3) != "connected"
            assert adaptive("ban", "192.0.2.7", "--for", "10m").returncode == 0, said()
            assert adaptive("unban", "192.0.2.7").returncode == 0, said()

            moved = ['adaptive_decisions_total{reason="score", outcome="ban"} > 0',
                     "adaptive_ban_dropped_packets_total > 0",
                     'adaptive_rate_limit_dropped_packets_total{port="25"} > 0',
                     'adaptive_rate_limit_dropped_packets_total{port="143"} > 0',
                     "adaptive_outbound_dropped_packets_total > 0",
                     'adaptive_bans{set="ban4"} == 1',
                     "adaptive_manual_unbans_total > 0",
                     'adaptive_lines_ignored_total > 0', "adaptive_lines_unparsable_total > 0"]
            assert wait_for(lambda: all(has(e) for e in moved), timeout=30), \
                f"{[e for e in moved if not has(e)]}\n{said()}"
            # Two more scrapes, so that every rate() has two samples of the figures as they are now.
            last = float(srv.call(query, 'timestamp(up{job="adaptive"})')["result"][0]["value"][1])
            assert wait_for(lambda: float(srv.call(query, 'timestamp(up{job="adaptive"})')["result"][0]["value"][1])
                            >= last + 2, timeout=10), said()

            empty, failed, evaluated = [], [], 0
            for expr in exprs(dashboard()):
                label = None
                values = re.fullmatch(r"label_values\((\w+), *(\w+)\)", expr)
                if values:
                    expr, label = values[1], values[2]
                answer = srv.call(query, substitute(expr))
                evaluated += 1
                if "error" in answer:
                    failed.append((expr, answer["error"]))
                elif not answer["result"] or (label and not all(label in r["metric"] for r in answer["result"])):
                    empty.append(expr)
            assert not failed and not empty, (failed, empty)
            assert evaluated >= 30

            # Some figures the traffic above must have made, as the dashboard reads them.
            def value(expr: str) -> float:
                return float(srv.call(query, substitute(expr))["result"][0]["value"][1])
            assert value('sum(adaptive_bans{instance=~"$instance"})') == 1
            assert value('sum(rate(adaptive_decisions_total{reason="score", outcome="ban"}[$__rate_interval]))') > 0
            assert 0 < value("histogram_quantile(0.5, sum by (le) (rate(adaptive_ban_latency_seconds_bucket"
                             "[$__rate_interval])))") < 1

            exposition = srv.call(fetch, f"http://{METRICS}/metrics")
            lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
            assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
            assert "192.0.2." not in exposition

            # The alerts, evaluated every second all along: loaded, healthy, and quiet.
            loaded = {r["name"]: r for g in json.loads(srv.call(fetch, f"http://{PROMETHEUS}/api/v1/rules"))
                      ["data"]["groups"] for r in g["rules"]}
            assert set(loaded) == {rule["alert"] for rule in alerts()}
            unhealthy = {n: (r["health"], r.get("lastError")) for n, r in loaded.items() if r["health"] != "ok"}
            raised = {n: [a["labels"] for a in r["alerts"]] for n, r in loaded.items() if r["state"] != "inactive"}
            assert not unhealthy and not raised, (unhealthy, raised)
        finally:
            for p in processes:
                p.terminate()
            for p in processes:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
