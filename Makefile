# robotwtf: `make run` and `make test` work on a fresh machine (see README.md).
#
#   make venv    .venv with the pinned, hash-checked dev+test set (requirements-dev.txt)
#   make pyz     ./robotwtf.pyz (tools/build_pyz.py: one zipapp for CPython 3.11-3.13)
#   make run     venv + pyz, then `robotwtf.pyz serve $(ARGS)`     e.g. make run ARGS="--port 9000"
#   make test    venv + pyz + Chromium (apt-get, as root), then the whole pytest suite  e.g. make test PYTEST_ARGS="-k pyz"
#   make test-postgres  the storage, browser, OAuth and MCP suites and tests/postgres/ against a
#                throwaway PostgreSQL cluster (tools/pg_cluster.py; needs Debian's postgresql)
#   make bench   venv + pyz + wrk, then bench/run.py: robotwtf vs the MCP SDK server and a bare
#                ceiling, table in bench/results.md              e.g. make bench BENCH_ARGS="--repeats 1"
#   make conformance  the official MCP conformance suite + MCP Inspector CLI against a real server
#                (tools/conformance.sh; Node 22 and the npm packages cached in ~/.cache/robotwtf-node)
#   make e2e-pds the whole ATProto login against a real Bluesky PDS on loopback (tools/e2e-pds.sh;
#                first run installs it into ~/.cache/atproto-local-pds, ~570 MiB; needs npm, g++, make)
#   make lock    re-pin requirements*.txt from requirements*.in (needs the package index)
#   make clean   build outputs and caches; `make distclean` also removes .venv

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := pyz
.DELETE_ON_ERROR:

# The interpreter that makes .venv and runs the pyz: python3.11 if there is one, else python3.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.robotwtf-requirements
PIP_INSTALL := -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps
ARGS ?=
PYTEST_ARGS ?= -ra
# Suites with their own targets (and their own peers to start) are not part of `make test`.
SEPARATE_SUITES := --ignore=tests/e2e_pds --ignore=tests/postgres
# What `make test-postgres` runs on PostgreSQL (the same tests, with every instance's database there).
POSTGRES_SUITES := tests/test_wiki_storage.py tests/test_wiki_http.py tests/test_browser.py tests/test_login_routes.py \
  tests/test_oauth_as.py tests/test_oauth_bearer.py tests/test_oauth_cimd.py \
  tests/test_mcp_tools.py tests/test_mcp_http.py tests/test_mcp_protocol.py \
  tests/test_people.py tests/test_wiki_ux.py tests/test_browser_people.py tests/test_wiki_ux_browser.py \
  tests/test_git.py tests/test_semantic.py tests/postgres
SCREENSHOTS := test-artifacts/screenshots
APP_SOURCES := $(wildcard robotwtf*.py) schema.sql $(shell find views static -type f 2>/dev/null)

.PHONY: venv pyz run test test-postgres bench e2e-pds conformance lock clean distclean check-python browser

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null || { \
	  echo "robotwtf needs Python 3.11 or newer to build; '$(PYTHON)' is $$($(PYTHON) -V 2>&1 || echo missing)." \
	       "Install python3.11 or run: make PYTHON=/path/to/python3.11 ..." >&2; exit 1; }

venv: $(STAMP)

# Re-runs whenever a requirements file changes. An existing .venv on a supported Python is
# brought to the pins in place; a missing or too-old one is made anew.
$(STAMP): requirements.txt requirements-dev.txt | check-python
	@if ! $(VPY) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then \
	  echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) -V 2>&1))"; \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	fi
	$(VPY) $(PIP_INSTALL) -r requirements-dev.txt
	$(VPY) -m pip check --disable-pip-version-check
	@touch $@

pyz: robotwtf.pyz

robotwtf.pyz: requirements.txt tools/build_pyz.py $(APP_SOURCES) | $(STAMP)
	$(VPY) tools/build_pyz.py --output $@

run: venv pyz
	exec $(PYTHON) ./robotwtf.pyz serve $(ARGS)

# The browser tests drive Debian's Chromium (Playwright downloads no browser of its own). Run as
# root with apt-get, make installs it; anywhere else it stops and names the command to run.
CHROMIUM := /usr/bin/chromium
BROWSER_PACKAGES := chromium fonts-liberation
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -d /usr/share/fonts/truetype/liberation ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(BROWSER_PACKAGES) with apt-get (for the browser tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null 2>&1 \
	      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; }; \
	  else \
	    echo "The browser tests need Chromium and its fonts. Run: sudo apt-get install -y $(BROWSER_PACKAGES)" >&2; \
	    exit 1; \
	  fi; \
	fi

# pytest's status is make's status; the screenshots folder is named last either way.
test: venv pyz browser
	@mkdir -p $(SCREENSHOTS)
	@status=0; $(VPY) -m pytest tests $(SEPARATE_SUITES) $(PYTEST_ARGS) || status=$$?; \
	  echo "screenshots: $(CURDIR)/$(SCREENSHOTS)"; exit $$status

# The suites again with every instance on PostgreSQL: tools/pg_cluster.py starts a throwaway cluster
# (initdb in a temporary folder, loopback only, as the `postgres` user when run as root), sets
# ROBOTWTF_TEST_DATABASE_URL for tests/conftest.py, and removes it afterwards. Without PostgreSQL
# it fails saying how to install it.
test-postgres: venv pyz browser
	@$(VPY) tools/pg_cluster.py check
	@mkdir -p $(SCREENSHOTS)
	$(VPY) tools/pg_cluster.py run -- $(VPY) -m pytest $(POSTGRES_SUITES) $(PYTEST_ARGS)

# Official MCP conformance suite + MCP Inspector CLI against a real server (npm needed once).
conformance: venv
	PYTHON=$(VPY) bash tools/conformance.sh

# The login end to end against the reference @atproto/pds (../shared/pds launcher); pytest's status is make's.
e2e-pds: venv
	VPY=$(VPY) bash tools/e2e-pds.sh $(PYTEST_ARGS)

# The long reliability tests (tests/soak/, issue 7): a minute of 16 racing writers, ten kill -9
# rounds, backups under load, thousands of random fuzz examples, 200 slow clients. -s shows the
# measured numbers. The file is named on the command line, so pytest cannot pass by collecting none.
.PHONY: soak
soak: venv
	$(VPY) -m pytest -ra -s tests/soak/soak_reliability.py

# wrk comes from the distribution (Debian: apt-get); the report is printed and written to bench/results.md.
BENCH_ARGS ?=
bench: venv pyz
	@command -v wrk >/dev/null || { echo "installing wrk with apt-get"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y wrk >/dev/null || { $$SUDO apt-get update -q && $$SUDO apt-get install -y wrk; }; }
	@$(VPY) tools/pg_cluster.py check
	$(VPY) bench/run.py --python $(PYTHON) --pyz robotwtf.pyz $(BENCH_ARGS)

# CUSTOM_COMPILE_COMMAND makes the files' headers say how to regenerate them.
lock: | check-python
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2
	CUSTOM_COMPILE_COMMAND="make lock" build/lock-venv/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	CUSTOM_COMPILE_COMMAND="make lock" build/lock-venv/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in
	rm -rf build/lock-venv

clean:
	rm -rf robotwtf.pyz robotwtf.pyz.partial build dist test-artifacts .pytest_cache
	find . \( -path ./$(VENV) -o -name node_modules -o -path ./.git \) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
