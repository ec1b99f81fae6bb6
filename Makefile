# The two commands of the README, plus the pieces they are made of.
PY := .venv/bin/python
CONFIG ?= conf/adaptive.toml

.PHONY: setup run lint test bench demo clean

setup:
	./setup.sh

run: setup
	.venv/bin/adaptive run -c $(CONFIG)

# ruff (the rule set in pyproject.toml) over the code, tests and benchmarks, and mypy over adaptive/
# (its modules that do not pass yet are listed there, a list that only shrinks). make test runs it first.
lint: setup
	.venv/bin/ruff check adaptive tests bench demo
	.venv/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark (their figures on stderr as they run), then one table of them on stdout.
# nft.py and latency.py run in network namespaces of their own.
bench: setup
	$(PY) bench/table.py

# The scene of the end-to-end tests, attacked while it prints what happens; torn down at the end.
demo: setup
	$(PY) demo/demo.py

clean:
	rm -rf .venv .pytest_cache build *.egg-info
