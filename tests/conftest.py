"""Markers by test module, so that a run can leave out what needs the kernel, real servers, or a whole
scene: `pytest -m "not e2e"` runs the fast tests, `-m "not kernel"` those that touch no network namespace."""

from __future__ import annotations

import pytest

# module -> its markers. kernel: nftables in network namespaces the test makes; servers: real Postfix,
# Dovecot, Prometheus or fail2ban; e2e: a daemon or a scene run whole, minutes rather than seconds.
MARKS: dict[str, tuple[str, ...]] = {
    "test_nftables_kernel": ("kernel",),
    "test_control": ("kernel",),
    "test_metrics": ("kernel",),
    "test_import_fail2ban": ("servers",),
    "test_daemon": ("kernel", "e2e"),
    "test_prometheus": ("kernel", "servers", "e2e"),
    "test_e2e": ("kernel", "servers", "e2e"),
    "test_debian13": ("kernel", "servers", "e2e"),
    "test_bench_smoke": ("servers", "e2e"),
    "test_bench_journal_smoke": ("servers", "e2e"),
    "test_bench_latency_smoke": ("kernel", "servers", "e2e"),
    "test_bench_repair_smoke": ("kernel", "servers", "e2e"),
    "test_deb": ("kernel", "e2e", "package"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for mark in MARKS.get(item.module.__name__.rpartition(".")[2] if item.module else "", ()):
            item.add_marker(mark)
