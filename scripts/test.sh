#!/usr/bin/env bash
# The test command (README quick start, command 2; .ci/run execs it).
#
#   bash scripts/test.sh [pytest args...]
#
# Idempotent, and works on a fresh machine: creates .venv and installs the package with its test extras (at
# constraints.txt's versions, the ones the suite last passed with),
# installs PostgreSQL and docker-compose with apt when missing (as root), starts a throwaway PostgreSQL
# cluster on 127.0.0.1:${EVAULT_TEST_PG_PORT:-25432} as an unprivileged user (stopped and removed on exit),
# validates docker/compose.yaml, runs ruff and mypy, builds the docs strictly, then pytest twice, at once: on SQLite
# and on PostgreSQL (the whole suite in three lanes: the PostgreSQL pass; the SQLite pass; and the tests marked
# `once`, then those marked `budgeted` on both databases).
# Exits non-zero if any step fails or a pytest run collects no tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
PG_PORT=${EVAULT_TEST_PG_PORT:-25432}  # below the ephemeral range (32768-60999)
PG_DB=evault_test
# The PostgreSQL pass's own embedded-store port bases (the SQLite pass reads EVAULT_TEST_S3_PORT_BASE and
# EVAULT_TEST_SERVE_PORT_BASE, defaults 28330 and 23400), so that two runs on one machine can be moved apart.
PG_PASS_S3_BASE=${EVAULT_TEST_PG_S3_PORT_BASE:-29330}
PG_PASS_SERVE_BASE=${EVAULT_TEST_PG_SERVE_PORT_BASE:-23500}
# Each pass's block of 1,250 ports for the other servers tests start (tests/ports.py names the ranges in it).
PG_PASS_AUX_BASE=${EVAULT_TEST_PG_AUX_PORT_BASE:-31250}
# The full suite runs the tests marked `once` in a lane of their own, beside the two passes, on these bases.
ONCE_S3_BASE=${EVAULT_TEST_ONCE_S3_PORT_BASE:-27330}
ONCE_SERVE_BASE=${EVAULT_TEST_ONCE_SERVE_PORT_BASE:-23600}
ONCE_AUX_BASE=${EVAULT_TEST_ONCE_AUX_PORT_BASE:-26000}
START=$SECONDS

section() { printf '\n=== %s (+%ss)\n' "$*" "$((SECONDS - START))"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
apt_install() {
    is_root || die "missing $*: install it (apt-get install $*) or run this script as root"
    command -v apt-get >/dev/null || die "missing $* and no apt-get to install it with"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    echo "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Python environment ----------------------------------------------------------------------------------
section "python environment"
if [ ! -x "$PY" ]; then
    echo "creating .venv"
    if ! python3 -m venv "$VENV"; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
fi
PIP_LOG=$(mktemp)
if ! "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' >"$PIP_LOG" 2>&1; then
    cat "$PIP_LOG" >&2
    rm -f "$PIP_LOG"
    die "pip install -c constraints.txt -e '.[test]' failed"
fi
rm -f "$PIP_LOG"
"$PY" --version

# --- System tools: PostgreSQL server, docker-compose, poppler-utils (pdfsig), softhsm2, chromium ------------------------
find_pg_bin() {
    local d
    if command -v initdb >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && echo "$d"
    done | sort -V | tail -n 1
}

section "system tools"
PG_BIN=$(find_pg_bin)
missing=()
[ -n "$PG_BIN" ] || missing+=(postgresql)
command -v docker-compose >/dev/null || missing+=(docker-compose)
# The embedded store's boundary: unshare (util-linux), ip (iproute2); tests run clients as another user.
command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v pdfsig >/dev/null || missing+=(poppler-utils)  # certificate PDFs are checked with poppler too
command -v npm >/dev/null || missing+=(nodejs npm)  # the TypeScript contract check (tests/typescript)
command -v promtool >/dev/null || missing+=(prometheus)  # promtool checks docker/prometheus/evault-alerts.yaml
command -v softhsm2-util >/dev/null || missing+=(softhsm2)  # the PKCS#11 signer's token (tests/test_signing_key_hsm.py)
command -v chromium >/dev/null || missing+=(chromium)  # the browser ceremony (tests/test_signing_browser.py, Playwright)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        # The package may have created and started its own "main" cluster; we use a private one instead.
        if command -v pg_lsclusters >/dev/null; then
            pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" { print $1, $2 }' |
                while read -r ver name; do pg_ctlcluster "$ver" "$name" stop || true; done
        fi
        PG_BIN=$(find_pg_bin)
        [ -n "$PG_BIN" ] || die "postgresql installed but no initdb found"
    fi
fi
echo "postgresql: $("$PG_BIN/postgres" --version)"
echo "docker-compose: $(docker-compose version --short 2>/dev/null || echo '?')"

# --- Throwaway PostgreSQL cluster -------------------------------------------------------------------------
# Root cannot run postgres: use the Debian package's "postgres" user, else a dedicated system user.
if is_root; then
    if id -u postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        PG_USER=evault-ci
        id -u "$PG_USER" >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    fi
    as_pg() { (cd / && runuser -u "$PG_USER" -- "$@"); }
    PG_TMP=$(mktemp -d /tmp/evault-pg.XXXXXX)
    chown "$PG_USER" "$PG_TMP"
else
    PG_USER=$(id -un)
    as_pg() { (cd / && "$@"); }
    PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/evault-pg.XXXXXX")
fi
PG_DATA=$PG_TMP/data
PG_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$PG_PID" ]; then
        echo "stopping postgresql"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t 30 >/dev/null 2>&1 ||
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w >/dev/null 2>&1 ||
            kill "$PG_PID" 2>/dev/null || true
        wait "$PG_PID" 2>/dev/null || true # reap it: no zombie left behind
    fi
    rm -rf "$PG_TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "postgresql cluster on 127.0.0.1:$PG_PORT (user $PG_USER)"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust --encoding=UTF8 --locale=C --no-sync \
    >"$PG_TMP/initdb.log" 2>&1 || { cat "$PG_TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PG_DATA/postgresql.conf" <<EOF

# evault test cluster: loopback only, private socket dir, no durability needed
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_TMP'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
# A child of this script (not daemonized by pg_ctl), so that it is reaped when it stops.
as_pg "$PG_BIN/postgres" -D "$PG_DATA" >"$PG_TMP/server.log" 2>&1 &
PG_PID=$!
# Ours is ready when it is alive, its postmaster.pid says so (not another server on the same port) and
# pg_isready gets an answer.
pg_ready() {
    kill -0 "$PG_PID" 2>/dev/null &&
        [ "$(sed -n 8p "$PG_DATA/postmaster.pid" 2>/dev/null | tr -d ' ')" = ready ] &&
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
}
for _ in $(seq 1 120); do
    pg_ready && break
    kill -0 "$PG_PID" 2>/dev/null || break
    sleep 0.5
done
if ! pg_ready; then
    cat "$PG_TMP/server.log" >&2
    die "postgresql did not start (is port $PG_PORT taken? set EVAULT_TEST_PG_PORT)"
fi
"$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
PG_URL="postgresql+psycopg://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
echo "database: $PG_URL"

# --- Checks: each one runs, failures are collected and reported at the end ---------------------------------
failed=()
check() {
    local name=$1
    shift
    section "$name"
    local rc=0
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--> $name: FAILED (exit $rc)"
        failed+=("$name")
    fi
}
# Each run names its 15 slowest steps: what to look at first when the suite nears its 30-minute budget.
run_pytest() {
    local rc=0
    "$PY" -m pytest --durations=15 "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "--> pytest collected no tests: that counts as a failure"
    fi
    return "$rc"
}
# The PostgreSQL pass runs beside the SQLite one (most of a test's time is spent waiting on servers, so the
# passes share 2 cores well), on its own ports, and skips the tests marked `once` (independent of the
# database under test: servers on the embedded defaults, pure functions, their own PostgreSQL cluster).
# $1: the pass's mark expression; the rest: pytest's arguments.
run_pytest_pg() {
    local marks=$1
    shift
    EVAULT_TEST_DATABASE_URL="$PG_URL" EVAULT_TEST_S3_PORT_BASE="$PG_PASS_S3_BASE" \
        EVAULT_TEST_SERVE_PORT_BASE="$PG_PASS_SERVE_BASE" EVAULT_TEST_AUX_PORT_BASE="$PG_PASS_AUX_BASE" \
        run_pytest -m "$marks" "$@"
}
# The whole suite (no pytest arguments) runs a third lane on its own ports: the tests marked `once`, then the
# tests marked `budgeted` (they run for a fixed time budget, minutes, whatever the machine) on SQLite and then
# on PostgreSQL, one after the other. Alone, the SQLite pass used about 0.6 of a core for 31 minutes, waiting on
# its servers; with the `once` tests in this lane it took ~23-25 minutes and this lane ~10, so the budgeted
# tests (the contract test: ~4 minutes on each database) moved here too. A run of chosen tests keeps every test
# in the two passes (a lane that selects nothing would count as a failure).
third_lane_env() {
    EVAULT_TEST_S3_PORT_BASE="$ONCE_S3_BASE" EVAULT_TEST_SERVE_PORT_BASE="$ONCE_SERVE_BASE" \
        EVAULT_TEST_AUX_PORT_BASE="$ONCE_AUX_BASE" "$@"
}
run_third_lane() {
    local rc=0
    third_lane_env run_pytest -m once || rc=$?
    third_lane_env run_pytest -m "budgeted and not once" || rc=$?
    EVAULT_TEST_DATABASE_URL="$PG_URL" third_lane_env run_pytest -m "budgeted and not once" || rc=$?
    return "$rc"
}

# Every test module must import (mypy does not read tests/): a run of chosen files still collects them all.
collect_tests() {
    local out rc=0
    out=$("$PY" -m pytest --collect-only -q -p no:cacheprovider tests 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then echo "$out"; else echo "$out" | tail -1; fi
    return "$rc"
}

check "docker-compose config" docker-compose --env-file docker/example.env -f docker/compose.yaml config -q
# Kubernetes manifests (the API and the nightly verifier), against the schemas kubernetes-validate ships (no cluster).
check "kubernetes manifests" "$VENV/bin/kubernetes-validate" --quiet --strict -k 1.30.0 docker/k8s/*.yaml
check "ruff check" "$PY" -m ruff check .
check "ruff format --check" "$PY" -m ruff format --check .
check "mypy" "$PY" -m mypy
check "import contracts" "$VENV/bin/lint-imports"
check "tests collect" collect_tests
# The documentation site: a broken link or anchor, or a page left out of mkdocs.yml's nav, fails the build.
DOCS_SITE=$(mktemp -d)
check "mkdocs build --strict" env NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --site-dir "$DOCS_SITE"
rm -rf "$DOCS_SITE"

unset EVAULT_TEST_DATABASE_URL
# A lane in the background: its output is printed when it is done, by finish_lane.
declare -A LANE_PID LANE_LOG
start_lane() {
    local name=$1
    shift
    LANE_LOG[$name]=$(mktemp)
    section "$name (in the background, output below when done)"
    "$@" >"${LANE_LOG[$name]}" 2>&1 &
    LANE_PID[$name]=$!
}
finish_lane() {
    local name=$1 rc=0
    section "$name"
    wait "${LANE_PID[$name]}" || rc=$?
    cat "${LANE_LOG[$name]}"
    rm -f "${LANE_LOG[$name]}"
    if [ "$rc" -ne 0 ]; then
        echo "--> $name: FAILED (exit $rc)"
        failed+=("$name")
    fi
}
if [ "$#" -eq 0 ]; then
    start_lane "pytest on postgresql" run_pytest_pg "not once and not budgeted"
    start_lane "pytest: the tests marked once, then those marked budgeted on both databases" run_third_lane
    check "pytest on sqlite" run_pytest -m "not once and not budgeted"
    finish_lane "pytest: the tests marked once, then those marked budgeted on both databases"
else
    start_lane "pytest on postgresql" run_pytest_pg "not once" "$@"
    check "pytest on sqlite" run_pytest "$@"
fi
finish_lane "pytest on postgresql"

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all checks passed in $((SECONDS - START))s"
