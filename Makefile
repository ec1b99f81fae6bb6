# The two commands of the README, plus the pieces they are made of.
PY := .venv/bin/python
CONFIG ?= conf/adaptive.toml

.PHONY: setup test-setup run lint test test-fast bench demo deb clean

# What the daemon needs, and nothing else (no test servers on a production host).
setup:
	./setup.sh

# Besides: the test servers (their units disabled and masked), fail2ban, promtool, debootstrap, and the
# tools to build the Debian package.
test-setup:
	./setup.sh test

run: setup
	.venv/bin/adaptive run -c $(CONFIG)

# ruff (the rule set in pyproject.toml) over the code, tests and benchmarks, and mypy --strict over
# adaptive/ (no module exempt). make test runs it first.
lint: test-setup
	.venv/bin/ruff check adaptive tests bench demo
	.venv/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The tests that take seconds (no daemon or scene run whole), on both cores: under a minute here.
test-fast: test-setup
	$(PY) -m pytest -m "not e2e" -n 2 $(PYTEST_ARGS)

# Every benchmark (their figures on stderr as they run), then one table of them on stdout.
# nft.py and latency.py run in network namespaces of their own.
bench: test-setup
	$(PY) bench/table.py

# The scene of the end-to-end tests, attacked while it prints what happens; torn down at the end.
demo: test-setup
	$(PY) demo/demo.py

# build/adaptive_<version>_all.deb, built by Debian's tools (debhelper, pybuild) from a copy of the
# checkout's files, so the checkout stays clean.
deb:
	./setup.sh build
	./debian/build.sh build

clean:
	rm -rf .venv .pytest_cache build *.egg-info
