"""The metrics: one test per metric, each with its own registry; the endpoint; the dashboard's names.

The daemon runs here without the kernel: `enforce=False`, or a fake backend that records what it is
sent. The kernel's figures are given as `KernelFigures` (tests/test_prometheus.py reads them from a
real kernel). The census is taken directly (`Census.take`), as the daemon's loop would for a scrape.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from adaptive import __version__, config
from adaptive.addresses import read
from adaptive.daemon import Daemon, ops
from adaptive.metrics import OUTCOMES, Cached, Census, Exporter, KernelFigures, MetricsError, Snapshot
from adaptive.nftables.bans import Ban
from adaptive.nftables.executor import NftablesError
from adaptive.state import StateError
from prometheus_client import CollectorRegistry, generate_latest

from configs import write_local
from netns import PYTHON, Namespaces, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "adaptive.toml"
DASHBOARD = ROOT / "grafana" / "adaptive.json"


def fail(ip: str, second: int = 1, user: str = "") -> str:
    sasl = f", sasl_username={user}" if user else ""
    return (f"Nov 24 10:00:{second:02d} mx postfix/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN "
            f"authentication failed: UGFzc3dvcmQ6{sasl}\n")


IGNORED = "Nov 24 10:00:05 mx postfix/smtpd[1]: lost connection after DATA (120 bytes) from x[192.0.2.9]\n"


class FakeBackend:
    """The backend's surface the daemon uses, recording each change; `fail` is raised by `ban`."""

    def __init__(self) -> None:
        self.banned: list = []
        self.unbanned: list = []
        self.fail: Exception | None = None
        self.gone: list[str] = []          # what `missing` reports: what another tool removed
        self.applied: list[int] = []       # bans restored by each apply
        self.layout = self

    def ban_set(self, network):
        return "ban4"

    def set_for(self, version, key, prefixlen):
        return "ban4"

    def exists(self) -> bool:
        return False

    def missing(self) -> list:
        return list(self.gone)

    def list(self) -> list:
        return []

    def apply(self, config=None, restore=()) -> SimpleNamespace:
        restore = list(restore)
        self.applied.append(len(restore))
        self.gone, self.fail = [], None    # the table is whole again
        return SimpleNamespace(bans=len(restore), found=[])

    def check(self, config=None, restore=()) -> SimpleNamespace:
        return SimpleNamespace(bans=0, found=[])

    def ban(self, bans) -> int:
        if self.fail is not None:
            raise self.fail
        self.banned += bans
        return len(bans)

    def ban_targets(self, targets, timeout) -> int:
        return self.ban([Ban(t.text, timeout) for t in targets])

    def unban(self, entries) -> int:
        self.unbanned += entries
        return len(entries)


class Rig:
    """A daemon (no kernel, or a fake one) whose metrics go to a registry of the test's own."""

    def __init__(self, tmp_path: Path, extra: str = "", backend: FakeBackend | None = None):
        self.log = tmp_path / "mail.log"
        self.log.touch()
        self.local = write_local(tmp_path, extra=extra)
        cfg = config.load([SHIPPED, self.local], dropins=None)
        self.registry = CollectorRegistry()
        self.exporter = Exporter(self.registry, process=False)
        self.backend = backend
        self.daemon = Daemon(cfg, config_files=[SHIPPED, self.local], enforce=backend is not None,
                             backend=backend, control=False, metrics=self.exporter)
        census = Census()
        # A scrape's census, taken here rather than through the loop, which does not run in these tests.
        self.exporter.watch(lambda: census.take(self.daemon.followers, self.daemon.scorer), lambda: None)
        self.daemon.start()

    def feed(self, text: str) -> None:
        with open(self.log, "a") as f:
            f.write(text)
        self.daemon.poll_once()

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def close(self) -> None:
        self.daemon.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.fixture
def kernel_rig(tmp_path):
    r = Rig(tmp_path, backend=FakeBackend())
    yield r
    r.close()


# --- the pipeline's counts, read at scrape time ---

def test_lines_per_source(rig):
    rig.feed(fail("203.0.113.1") + "Nov 24 10:00:02 mx postfix/smtpd[1]: connect from x[192.0.2.9]\n")
    assert rig.value("adaptive_lines_total", source="mail") == 2


def test_unparsable_lines_per_source(rig):
    rig.feed("not a log line\n" + fail("203.0.113.1"))
    assert rig.value("adaptive_lines_unparsable_total", source="mail") == 1


def test_events_per_filter_rule_and_kind(rig):
    rig.feed(fail("203.0.113.1") + fail("203.0.113.2"))
    assert rig.value("adaptive_events_total", source="mail", filter="postfix", rule="sasl-auth-failed",
                     kind="auth_failure") == 2


def test_ignored_lines_per_filter(rig):
    rig.feed(IGNORED + IGNORED)
    assert rig.value("adaptive_lines_ignored_total", source="mail", filter="postfix",
                     rule="lost-connection-after-data") == 2


def test_lag_is_what_is_written_and_not_read(rig):
    rig.feed(fail("203.0.113.1"))
    assert rig.value("adaptive_source_lag_bytes", source="mail") == 0
    with open(rig.log, "a") as f:
        f.write(fail("203.0.113.2"))
    assert rig.value("adaptive_source_lag_bytes", source="mail") == len(fail("203.0.113.2"))


def test_lag_of_a_rotated_log_counts_the_new_file(rig):
    rig.feed(fail("203.0.113.1"))
    source = rig.daemon.followers[0].source
    rig.log.rename(rig.log.with_name("mail.log.1"))
    rig.log.write_text(fail("203.0.113.2"))
    assert source.lag() == len(fail("203.0.113.2"))


def test_a_source_that_cannot_be_read_is_failing_and_counted_once(tmp_path, rig):
    rig.log.unlink()
    rig.log.mkdir()
    rig.daemon.poll_once()
    rig.daemon.poll_once()
    assert rig.value("adaptive_source_failing", source="mail") == 1
    assert rig.value("adaptive_errors_total", kind="source") == 1
    rig.log.rmdir()
    rig.feed(fail("203.0.113.1"))
    assert rig.value("adaptive_source_failing", source="mail") == 0


def test_sources_tracked_by_scoring(rig):
    rig.feed(fail("203.0.113.1") + fail("203.0.113.2") + fail("2001:db8:1:2::5") + fail("2001:db8:1:2::6"))
    assert rig.value("adaptive_scoring_sources") == 3      # IPv6 is scored by /64


def test_evictions(tmp_path):
    rig = Rig(tmp_path, "[scoring]\nmax_sources = 2\n")
    rig.feed("".join(fail(f"203.0.113.{i}", i) for i in range(1, 6)))
    assert rig.value("adaptive_scoring_sources") == 2
    assert rig.value("adaptive_scoring_evictions_total") == rig.daemon.scorer.evictions == 3
    rig.close()


def test_counts_survive_a_reload(rig):
    rig.feed(fail("203.0.113.1") + "junk\n")
    assert rig.value("adaptive_lines_total", source="mail") == 2     # the census knows this engine
    rig.feed(fail("203.0.113.2"))                                     # counted by it, not yet seen
    rig.local.write_text(rig.local.read_text() + "\n[scoring]\nthreshold = 9\n")
    rig.daemon.reload()                                               # new engines, a new scorer
    rig.feed(fail("203.0.113.3"))
    assert rig.value("adaptive_lines_total", source="mail") == 4
    assert rig.value("adaptive_lines_unparsable_total", source="mail") == 1
    assert rig.value("adaptive_events_total", source="mail", filter="postfix", rule="sasl-auth-failed",
                     kind="auth_failure") == 3


# --- what the daemon reports as it happens ---

def test_decisions_per_reason_and_outcome(tmp_path):
    rig = Rig(tmp_path, '[allowlist]\naddresses = ["198.51.100.0/24"]\n')
    rig.feed("".join(fail("203.0.113.7", i) for i in range(5)) + "".join(fail("198.51.100.7", i) for i in range(5)))
    assert rig.value("adaptive_decisions_total", reason="score", outcome="ban") == 1
    assert rig.value("adaptive_decisions_total", reason="score", outcome="suppressed") == 1
    assert rig.value("adaptive_decisions_total", reason="slow", outcome="ban") == 0    # known from the start
    rig.close()


def test_the_outcomes_are_the_deciders():
    from adaptive.decisions import Outcome
    assert set(OUTCOMES) == {o.value for o in Outcome}


def test_dry_run_decisions(tmp_path):
    rig = Rig(tmp_path, "[decisions]\ndry_run = true\n")
    rig.feed("".join(fail("203.0.113.7", i) for i in range(5)))
    assert rig.value("adaptive_decisions_total", reason="score", outcome="dry_run") == 1
    assert rig.value("adaptive_decisions_total", reason="score", outcome="ban") == 0
    rig.close()


def test_manual_bans_and_unbans_and_never_their_reason(kernel_rig):
    ops.ban(kernel_rig.daemon, [read("192.0.2.7"), read("192.0.2.8")], 600, "seen on the honeypot 192.0.2.7", False)
    ops.unban(kernel_rig.daemon, ["192.0.2.7", "192.0.2.99"], False)
    assert kernel_rig.value("adaptive_manual_bans_total") == 2
    assert kernel_rig.value("adaptive_manual_unbans_total") == 1
    assert kernel_rig.value("adaptive_nft_transaction_duration_seconds_count", operation="unban") == 1
    assert kernel_rig.value("adaptive_nft_batch_size_sum", operation="unban") == 2
    text = kernel_rig.text()
    assert "honeypot" not in text and "192.0.2." not in text


def test_ban_latency_from_the_read_to_the_kernel(kernel_rig):
    kernel_rig.feed("".join(fail("203.0.113.7", i) for i in range(5)))
    assert [b.key for b in kernel_rig.backend.banned] == ["203.0.113.7"]
    assert kernel_rig.value("adaptive_ban_latency_seconds_count") == 1
    assert 0 < kernel_rig.value("adaptive_ban_latency_seconds_sum") < 5
    assert kernel_rig.value("adaptive_ban_latency_seconds_bucket", le="+Inf") == 1


def test_nft_transaction_duration_and_batch_size(kernel_rig):
    assert kernel_rig.value("adaptive_nft_transaction_duration_seconds_count", operation="apply") == 1
    kernel_rig.feed("".join(fail("203.0.113.7", i) + fail("203.0.113.8", i) for i in range(5)))
    assert kernel_rig.value("adaptive_nft_transaction_duration_seconds_count", operation="ban") == 1
    assert kernel_rig.value("adaptive_nft_batch_size_sum", operation="ban") == 2      # one transaction
    assert kernel_rig.value("adaptive_nft_batch_size_bucket", operation="ban", le="2.0") == 1
    assert kernel_rig.value("adaptive_nft_batch_size_bucket", operation="ban", le="1.0") == 0


def test_nft_errors(kernel_rig):
    kernel_rig.backend.fail = NftablesError("Could not process rule: No such file or directory", {})
    kernel_rig.feed("".join(fail("203.0.113.7", i) for i in range(5)))
    assert kernel_rig.value("adaptive_errors_total", kind="nft") == 1
    assert kernel_rig.value("adaptive_nft_transaction_duration_seconds_count", operation="ban") == 0
    assert kernel_rig.value("adaptive_ban_latency_seconds_count") == 0


def now_fails(ip: str) -> str:
    """Five failures logged now: their ban is live by the daemon's clock."""
    return "".join(fail(ip).replace("Nov 24 10:00:01", time.strftime("%b %d %H:%M:%S")) for _ in range(5))


def test_a_ban_into_a_vanished_set_repairs_the_table_with_every_live_ban(kernel_rig):
    backend = kernel_rig.backend
    backend.fail = NftablesError("Could not process rule: No such file or directory", {})
    backend.gone = ["set ban4", "chain input"]
    kernel_rig.feed(now_fails("203.0.113.7"))
    assert backend.applied[-1] == 1                  # the start's apply, then the repair with the new ban
    assert kernel_rig.value("adaptive_repairs_total", what="set") == 1
    assert kernel_rig.value("adaptive_repairs_total", what="chain") == 1
    assert kernel_rig.value("adaptive_repairs_total", what="table") == 0
    assert kernel_rig.value("adaptive_ban_latency_seconds_count") == 1
    backend.gone = ["table"]
    assert kernel_rig.daemon.kernel.watch(force=True) == ["table"]
    assert kernel_rig.value("adaptive_repairs_total", what="table") == 1
    assert kernel_rig.daemon.kernel.watch(force=True) == []


def test_live_bans_in_the_state(kernel_rig, monkeypatch):
    daemon = kernel_rig.daemon
    monkeypatch.setattr(daemon, "call", lambda work, timeout=60.0: work())     # no loop runs here
    kernel_rig.exporter.watch(daemon._take_census, lambda: None)
    assert kernel_rig.value("adaptive_bans_state") == 0
    kernel_rig.feed(now_fails("203.0.113.7"))
    assert kernel_rig.value("adaptive_bans_state") == 1
    assert kernel_rig.value("adaptive_state_unwritten") == 0


def test_a_manual_ban_the_kernel_refuses_is_an_error_and_stays_in_the_state(kernel_rig):
    # The kernel takes a batch on a helper thread while the state records it: its refusal still reaches
    # the caller, and the state keeps the bans, which the next start puts into the kernel.
    kernel_rig.backend.fail = NftablesError("Could not process rule: No such file or directory", {})
    with pytest.raises(NftablesError):
        ops.ban(kernel_rig.daemon, [read("192.0.2.7"), read("2001:db8::/64")], 600, "by hand", False)
    assert kernel_rig.value("adaptive_errors_total", kind="nft") == 1
    assert sorted(kernel_rig.daemon.state.live_ends(kernel_rig.daemon.clock())) == ["192.0.2.7", "2001:db8::/64"]


def test_status_says_when_the_kernel_cannot_be_read(kernel_rig, monkeypatch):
    daemon = kernel_rig.daemon
    monkeypatch.setattr(daemon, "call", lambda work, timeout=60.0: work())     # no loop runs here
    monkeypatch.setattr(daemon.kernel, "reads_kernel", True)                         # as with no backend given

    def refused():
        raise NftablesError("Could not process rule: Operation not permitted", {})
    monkeypatch.setattr(daemon.kernel, "figures", refused)
    status = ops.Operations(daemon).status()
    assert status["kernel_error"] == "Could not process rule: Operation not permitted"
    assert status["bans"] is None and status["events"] == 0
    monkeypatch.setattr(daemon.kernel, "figures", lambda: KERNEL)
    assert ops.Operations(daemon).status()["bans"] == sum(KERNEL.bans.values())


def test_a_reload_the_kernel_refuses_after_its_check_keeps_the_running_configuration(kernel_rig, monkeypatch):
    from adaptive.wire import ControlError
    daemon = kernel_rig.daemon
    running = daemon.config

    def refused(config=None, restore=()):
        raise NftablesError("Could not process rule: Interrupted system call", {})
    monkeypatch.setattr(kernel_rig.backend, "apply", refused)
    with pytest.raises(ControlError, match="the kernel refused the new ruleset: Could not process rule"):
        daemon.reload()
    assert daemon.config is running
    assert kernel_rig.value("adaptive_errors_total", kind="nft") == 1


def test_state_errors(rig):
    def broken():
        raise StateError("state.db: database disk image is malformed")
    with pytest.raises(StateError):
        future_result(rig.daemon, broken)
    assert rig.value("adaptive_errors_total", kind="state") == 1
    assert rig.value("adaptive_errors_total", kind="nft") == 0


def future_result(daemon: Daemon, work):
    from concurrent.futures import Future
    future: Future = Future()
    daemon._requests.put((work, future))
    daemon._serve_requests()
    return future.result(0)


def test_build_info():
    registry = CollectorRegistry()
    Exporter(registry, process=False)
    assert registry.get_sample_value("adaptive_build_info", {"version": __version__}) == 1


def test_process_metrics_are_served_unless_asked_not_to():
    registry = CollectorRegistry()
    Exporter(registry)
    assert registry.get_sample_value("process_cpu_seconds_total") is not None


# --- the kernel's figures ---

KERNEL = KernelFigures(
    bans={("ban4", "ipv4"): 3, ("ban4_24", "ipv4"): 1, ("ban6", "ipv6"): 0, ("ban6_64", "ipv6"): 2},
    counters={"bans": (40, 2400), "rate_limit_25": (7, 420), "rate_limit_993": (1, 60), "outbound": (2, 120),
              "conn_limit": (5, 300), "closed": (9, 540)},
    seconds=0.004)


def kernel_exporter(figures: KernelFigures | None = KERNEL) -> CollectorRegistry:
    registry = CollectorRegistry()
    Exporter(registry, process=False).watch(Snapshot, lambda: figures)
    return registry


def test_live_bans_per_set_and_family():
    r = kernel_exporter()
    assert r.get_sample_value("adaptive_bans", {"set": "ban4", "family": "ipv4"}) == 3
    assert r.get_sample_value("adaptive_bans", {"set": "ban6_64", "family": "ipv6"}) == 2
    assert r.get_sample_value("adaptive_bans", {"set": "ban6", "family": "ipv6"}) == 0


def test_dropped_by_the_ban_rule():
    r = kernel_exporter()
    assert r.get_sample_value("adaptive_ban_dropped_packets_total") == 40
    assert r.get_sample_value("adaptive_ban_dropped_bytes_total") == 2400


def test_dropped_by_each_ports_rate_limit():
    r = kernel_exporter()
    assert r.get_sample_value("adaptive_rate_limit_dropped_packets_total", {"port": "25"}) == 7
    assert r.get_sample_value("adaptive_rate_limit_dropped_bytes_total", {"port": "993"}) == 60


def test_dropped_by_the_outbound_restriction():
    r = kernel_exporter()
    assert r.get_sample_value("adaptive_outbound_dropped_packets_total") == 2
    assert r.get_sample_value("adaptive_outbound_dropped_bytes_total") == 120


def test_dropped_by_the_connection_limit_and_closed_ports():
    r = kernel_exporter()
    assert r.get_sample_value("adaptive_conn_limit_dropped_packets_total") == 5
    assert r.get_sample_value("adaptive_closed_port_dropped_packets_total") == 9


def test_kernel_read_duration():
    assert kernel_exporter().get_sample_value("adaptive_kernel_read_duration_seconds") == 0.004


def test_what_the_table_lacks_is_not_made_up():
    r = kernel_exporter(KernelFigures({("ban4", "ipv4"): 0}, {"bans": (0, 0)}))
    assert r.get_sample_value("adaptive_outbound_dropped_packets_total") is None
    assert r.get_sample_value("adaptive_rate_limit_dropped_packets_total", {"port": "25"}) is None


def test_a_kernel_that_cannot_be_read_leaves_its_figures_out(caplog):
    def broken():
        raise NftablesError("netlink: Operation not permitted", {})
    registry = CollectorRegistry()
    Exporter(registry, process=False).watch(Snapshot, broken)
    assert registry.get_sample_value("adaptive_bans", {"set": "ban4", "family": "ipv4"}) is None
    assert registry.get_sample_value("adaptive_build_info", {"version": __version__}) == 1
    assert "Operation not permitted" in caplog.text


def test_kernel_reads_are_cached_for_ten_times_their_cost():
    now, reads = [0.0], []

    def read():
        reads.append(now[0])
        now[0] += 0.5           # a read of many bans: half a second
        return len(reads)
    cached = Cached(read, every=1.0, factor=10.0, clock=lambda: now[0])
    assert cached() == 1
    now[0] = 4.0
    assert cached() == 1        # 4 s old: a 0.5 s read is done at most every 5 s
    now[0] = 5.0
    assert cached() == 2


def test_a_busy_loop_serves_the_last_census():
    registry = CollectorRegistry()
    exporter = Exporter(registry, process=False)
    answers = [Snapshot(tracked=5)]

    def census():
        if not answers:
            raise TimeoutError
        return answers.pop()
    exporter.watch(census, lambda: None)
    assert registry.get_sample_value("adaptive_scoring_sources") == 5
    assert registry.get_sample_value("adaptive_scoring_sources") == 5


# --- the endpoint ---

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_endpoint_serves_and_stops(rig):
    rig.feed(fail("203.0.113.1"))
    rig.exporter.serve("127.0.0.1:0")
    host, port = rig.exporter.address
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    assert 'adaptive_lines_total{source="mail"} 1.0' in text
    rig.exporter.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5)
    rig.exporter.close()        # twice is fine


def test_ipv6_loopback():
    exporter = Exporter(CollectorRegistry(), process=False)
    try:
        exporter.serve("[::1]:0")
    except MetricsError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    port = exporter.address[1]
    assert b"adaptive_build_info" in urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5).read()
    exporter.close()


def test_an_address_in_use_is_a_start_up_error_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        local = write_local(tmp_path)
        local.write_text(local.read_text().replace('listen = ""', f'listen = "{listen}"'))
        cfg = config.load([SHIPPED, local], dropins=None)
        assert cfg.metrics.listen == listen
        daemon = Daemon(cfg, enforce=False, control=False)
        with pytest.raises(MetricsError, match=re.escape(f"metrics.listen = '{listen}'") + ".*in use"):
            daemon.start()
        daemon.close()


def test_the_daemon_serves_at_the_configured_address_until_closed(tmp_path):
    port = free_port()
    local = write_local(tmp_path)
    local.write_text(local.read_text().replace('listen = ""', f'listen = "127.0.0.1:{port}"'))
    (tmp_path / "mail.log").write_text(fail("203.0.113.1"))
    cfg = config.load([SHIPPED, local], dropins=None)
    stop, made = threading.Event(), []

    def loop() -> None:    # the daemon on a thread of its own, as `adaptive run` has it on the main one
        made.append(Daemon(cfg, enforce=False, control=False))
        made[0].run(stop)
    thread = threading.Thread(target=loop)
    thread.start()
    try:
        assert wait_for(lambda: made and made[0].counts["events"] == 1, timeout=10)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert f'adaptive_build_info{{version="{__version__}"}} 1.0' in text
        assert 'adaptive_lines_total{source="mail"} 1.0' in text
    finally:
        stop.set()
        made[0].wake()
        thread.join(10)    # run() closes the daemon, the endpoint first
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root for a network namespace")
def test_adaptive_run_on_a_taken_address_stops_before_touching_the_kernel(tmp_path):
    local = write_local(tmp_path)
    local.write_text(local.read_text().replace('listen = ""', 'listen = "127.0.0.1:9469"'))
    with Namespaces("adm") as nets:
        ns = nets.add("srv")
        ns.call(serve, [9469], "127.0.0.1")
        done = ns.exec(str(PYTHON), "-m", "adaptive", "run", "-c", str(SHIPPED), "-c", str(local), "--dropins", "",
                       check=False)
        assert done.returncode == 1, done.stderr
        assert ("adaptive: cannot start: metrics.listen = '127.0.0.1:9469': cannot serve metrics there: "
                "Address already in use") in done.stderr
        assert ns.exec("nft", "list", "tables").stdout == ""


def test_a_reload_says_a_new_address_waits_for_a_restart(rig):
    rig.local.write_text(rig.local.read_text().replace('listen = ""', 'listen = "127.0.0.1:9470"'))
    assert "metrics.listen takes effect at the next start" in rig.daemon.reload()["changes"]


def test_metrics_off_serves_nothing(rig):
    assert rig.daemon.config.metrics.listen == ""
    daemon = Daemon(rig.daemon.config, enforce=False, control=False)
    assert type(daemon.metrics).__name__ == "NullMetrics"
    daemon.close()


# --- names, labels and the exposition format ---

def full_exposition(tmp_path: Path) -> str:
    """Every family, with values: a daemon that banned, a manual ban, and kernel figures."""
    rig = Rig(tmp_path, backend=FakeBackend())
    rig.feed("junk\n" + IGNORED + "".join(fail("203.0.113.7", i, user=f"user{i}@example.org") for i in range(5)))
    ops.ban(rig.daemon, [read("192.0.2.7")], 600, "by hand", False)
    census = Census()
    rig.exporter.watch(lambda: census.take(rig.daemon.followers, rig.daemon.scorer,
                                           rig.daemon.state.live_count(rig.daemon.clock())), lambda: KERNEL)
    text = rig.text()
    rig.close()
    return text


def test_no_address_or_user_name_is_a_label(tmp_path):
    text = full_exposition(tmp_path)
    labels = " ".join(re.findall(r"\{([^}]*)\}", text))
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f]*:", labels), labels
    assert "user" not in labels and "example.org" not in labels and "by hand" not in labels


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt install prometheus)")
def test_promtool_passes_the_exposition(tmp_path):
    text = full_exposition(tmp_path)
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


# --- the dashboard ---

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def exprs(board: dict) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its query variables."""
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            out.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    return out


def test_the_dashboard_imports_on_any_grafana():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "__inputs" not in board and board.get("id") is None and board["uid"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"] and p["gridPos"]["w"] <= 24, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p.get("targets", ()):
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert t["expr"] and t["refId"], p["title"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_names_only_metrics_adaptive_exports(tmp_path):
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", full_exposition(tmp_path), re.M))
    names = set()
    for name, kind in exported:
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    used = {n for e in exprs(dashboard()) for n in re.findall(r"\b(adaptive_\w+|process_\w+)", e)}
    assert used and used <= names, used - names
