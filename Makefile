# Two commands from a fresh clone: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test compat audit lint typecheck bench clean stack-check stack-build stack-up stack-scale stack-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: the whole pipeline on a synthetic market for 30 s, on the embedded store algotrade.db
run: $(STAMP)
	$(BIN)/algotrade run --source synthetic --interval 10s --short 50 --long 200 --duration 30s

## test: lint, type check and the test suite, each in its own nox virtualenv
test: $(STAMP)
	$(BIN)/nox -s lint typecheck tests

## compat: the test suite on Python 3.12 and 3.13 (found on PATH, or through pyenv)
compat: $(STAMP)
	PATH="$$(for v in 3.12 3.13; do p=$$(pyenv prefix $$(pyenv latest $$v 2>/dev/null) 2>/dev/null) && printf '%s/bin:' "$$p"; done)$$PATH" \
		$(BIN)/nox -s compat

## audit: known vulnerabilities of the locked runtime dependencies (PyPI must answer)
audit: $(STAMP)
	$(BIN)/nox -s audit

bench: $(STAMP)
	$(BIN)/nox -s bench

## stack-*: the docker-compose stack (needs Docker and a .env copied from .env.example);
## each refuses an .env with a required value missing or left at the example's change-me
.env:
	cp .env.example .env
	@echo "created .env from .env.example: set its passwords and ALERT_WEBHOOK_URL"

stack-check: .env
	@sh deploy/check-env .env docker-compose.yml

stack-build: stack-check
	docker compose build

stack-up: stack-check
	docker compose up -d --build

stack-scale: stack-check
	docker compose --profile scale up -d --build

stack-down:
	docker compose --profile scale down

clean:
	rm -rf $(VENV) .nox algotrade.db algotrade.db-wal algotrade.db-shm
