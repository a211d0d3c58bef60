# `make test` is the test command: it builds .venv/ if needed, lints, then runs the suite.
.PHONY: venv lint test demo

venv:
	bash scripts/setup-venv.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	.venv/bin/python -m pytest

demo: venv
	.venv/bin/python scripts/demo.py
