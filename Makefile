# The two commands of the README, plus the pieces they are made of.
PY := .venv/bin/python
CONFIG ?= conf/adaptive.toml

.PHONY: setup run test bench clean

setup:
	./setup.sh

run: setup
	.venv/bin/adaptive run -c $(CONFIG)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Each benchmark prints its own figures; nft.py runs in a network namespace of its own.
bench: setup
	$(PY) bench/parse.py
	$(PY) bench/nft.py
	$(PY) bench/scoring.py
	$(PY) bench/latency.py

clean:
	rm -rf .venv .pytest_cache build *.egg-info
