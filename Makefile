# The two commands: `make run` (local stack) and `make test` (whole suite); `make check` is the
# inner loop: lint and the tests that need no sockets, processes or external tools.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test check lint format bench package deploy teardown clean venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip<26.3'  # chalice 1.34 needs pip < 26.3
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# tests/markers.py decides which tests are `integration` (left out here).
check: lint
	$(PY) -m pytest --offline -q $(PYTEST_ARGS)

# ruff, dead code (vulture: [tool.vulture]), types (mypy: [tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m vulture
	$(PY) -m mypy chalicelib app.py devstack bench infra sip_edge testkit

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m bench

# build/<stage>/sam.json + deployment.zip for dev and prod, linted (STAGES="dev" for one).
STAGES ?= dev prod
package: $(STAMP)
	$(PY) -m infra.build $(addprefix --stage ,$(STAGES))

# The `chalice deploy` path: the infra stack (CloudFormation), then `chalice deploy --stage`.
# With AWS_ENDPOINT_URL pointing at a moto server it is the offline rehearsal.
#   make deploy STAGE=dev BUCKET=my-artefacts PARAMS="SipDomain=... EdgeImageTag=..."
#   make teardown STAGE=dev [PURGE=1]   (PURGE also deletes the retained tables and secret)
STAGE ?= dev
deploy: $(STAMP)
	$(PY) -m infra.deploy up --stage $(STAGE) $(if $(BUCKET),--bucket $(BUCKET)) \
	  $(if $(DEPLOY_DIR),--workdir $(DEPLOY_DIR)) $(PARAMS)

teardown: $(STAMP)
	$(PY) -m infra.deploy down --stage $(STAGE) $(if $(DEPLOY_DIR),--workdir $(DEPLOY_DIR)) \
	  $(if $(PURGE),--purge-data)

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
