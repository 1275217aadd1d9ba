#!/usr/bin/env bash
# End-to-end login tests against a real Bluesky PDS on loopback (`make e2e-pds`).
#
# Installs the reference @atproto/pds (plus an in-memory did:plc directory) into a cache folder
# outside the repo with the shared launcher, starts it, runs tests/e2e_pds with the environment
# those tests need, stops it, and exits with pytest's status. Extra arguments go to pytest.
#
# Environment (all optional):
#   ROBOTWTF_PDS_LAUNCHER  the launcher's folder (default: ../shared/pds beside the repo; read-only)
#   PDS_DEPS_DIR           where the PDS is installed and run (default:
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/atproto-local-pds; ~570 MiB, kept
#                          between runs so only the first run installs)
#   VPY                    the Python with robotwtf's test dependencies (default: .venv/bin/python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LAUNCHER_DIR="${ROBOTWTF_PDS_LAUNCHER:-$ROOT/../shared/pds}"
LAUNCHER="$LAUNCHER_DIR/start-local-pds.sh"
export PDS_DEPS_DIR="${PDS_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atproto-local-pds}"
# The tests read the passwords from here; the launcher creates these accounts.
export ACCOUNTS="alice.test:alice-pass bob.test:bob-pass"
VPY="${VPY:-$ROOT/.venv/bin/python}"
PDS_LOG="$PDS_DEPS_DIR/run-${PDS_PORT:-2583}/pds.log"

say() { printf 'e2e-pds: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

[[ -f "$LAUNCHER" ]] || die "no PDS launcher at $LAUNCHER (set ROBOTWTF_PDS_LAUNCHER)"
[[ -x "$VPY" ]] || die "no $VPY: run 'make venv' first (or set VPY)"
# A PDS left running from earlier would carry that run's cached client metadata and keys (the
# PDS caches them for 10 minutes) and would be stopped by this run: refuse instead.
if bash "$LAUNCHER" status >/dev/null 2>&1; then
  die "a local PDS is already running from $PDS_DEPS_DIR; stop it with: PDS_DEPS_DIR=$PDS_DEPS_DIR $LAUNCHER stop"
fi

WORK="$(mktemp -d)"
started=0
cleanup() {
  if ((started)); then
    bash "$LAUNCHER" stop || say "stopping the PDS failed; its log: $PDS_LOG"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
bash "$LAUNCHER" install
say "PDS install ready in $((SECONDS - t0)) s ($PDS_DEPS_DIR)"

t0=$SECONDS
started=1
bash "$LAUNCHER" start > "$WORK/pds.json"
say "PDS started in $((SECONDS - t0)) s: $(tr -d ' \n' < "$WORK/pds.json" | cut -c1-200)..."

status=0
ROBOTWTF_E2E_PDS="$WORK/pds.json" ROBOTWTF_E2E_PDS_ACCOUNTS="$ACCOUNTS" ROBOTWTF_E2E_PDS_LAUNCHER="$LAUNCHER_DIR" \
  "$VPY" -m pytest tests/e2e_pds -q -ra --durations=0 --rootdir "$ROOT" -p no:cacheprovider "$@" || status=$?
if ((status)); then
  say "pytest exited $status; the PDS's log: $PDS_LOG"
fi
exit "$status"
