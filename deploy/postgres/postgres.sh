#!/usr/bin/env bash
# Local throwaway PostgreSQL server for development and tests (our own cluster, not Debian's).
#
#   postgres.sh install          apt-get install postgresql if no server binaries are present
#   postgres.sh start <run-dir>  fresh cluster on a free 127.0.0.1 port; prints the SQLAlchemy URL
#                                (also written to <run-dir>/url)
#   postgres.sh stop  <run-dir>  fast shutdown (no-op if it is not running)
#   postgres.sh resume <run-dir> start a stopped cluster again, same data and port (for fault
#                                tests: clients reconnect to the same URL)
#
# <run-dir> holds data/ (wiped on each start), sock/, postgres.log, initdb.log, url.
# Must run as root: the server runs as the unprivileged $PG_USER via runuser,
# because postgres refuses to run as root.
set -euo pipefail

PG_USER=${INTAKE_PG_USER:-postgres}
DB=intake

die() { echo "postgres.sh: $*" >&2; exit 1; }

# Newest /usr/lib/postgresql/<ver>/bin that has initdb and pg_ctl.
find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  done
  return 1
}

install() {
  find_bin >/dev/null && return 0
  echo "postgres.sh: installing PostgreSQL via apt" >&2
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >&2
  find_bin >/dev/null || die "apt installed postgresql but no initdb/pg_ctl under /usr/lib/postgresql"
}

as_pg() { runuser -u "$PG_USER" -- "$@"; }

fail_start() {  # $1 = message, $2 = log to show
  echo "postgres.sh: $1; last 80 lines of $2:" >&2
  tail -n 80 "$2" >&2 2>/dev/null || true
  exit 1
}

# Give $PG_USER search (x) permission on each directory leading to $1 that it cannot
# traverse yet, e.g. pytest's /tmp/pytest-of-root, which is mode 0700. Top-down, so each
# check only fails on the directory that actually blocks.
allow_traverse() {
  local d="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${1#/}"
  for part in "${parts[@]}"; do
    d="$d/$part"
    if ! as_pg test -x "$d"; then
      echo "postgres.sh: chmod o+x $d so $PG_USER can reach the run dir" >&2
      chmod o+x "$d"
    fi
  done
}

is_running() {  # $1 = bin dir, $2 = run dir
  [[ -f "$2/data/postmaster.pid" ]] && as_pg "$1/pg_ctl" -D "$2/data" status >/dev/null 2>&1
}

# Start the server on $RUN/data, listening on 127.0.0.1:$2 ($1 = bin dir).
launch() {
  local bin="$1" port="$2" sock
  # Unix socket paths are limited to 107 bytes; deep run dirs (pytest) can exceed that.
  # We only connect over TCP, so in that case just disable the socket.
  sock="$RUN/sock"
  (( ${#sock} + 20 <= 107 )) || sock=""
  as_pg "$bin/pg_ctl" -D "$RUN/data" -w -t 60 -l "$RUN/postgres.log" \
    -o "-h 127.0.0.1 -p $port -k '$sock' -c fsync=on -c max_connections=100" start >/dev/null \
    || fail_start "pg_ctl start failed" "$RUN/postgres.log"
}

start() {
  [[ $EUID -eq 0 ]] || die "must run as root (it runs the server as $PG_USER)"
  mkdir -p "$1"
  RUN="$(cd "$1" && pwd)"
  install
  local bin port
  bin="$(find_bin)"
  id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  is_running "$bin" "$RUN" && die "a server is already running for $RUN; stop it first"

  allow_traverse "$RUN"
  rm -rf "$RUN/data" "$RUN/sock" "$RUN/postgres.log" "$RUN/initdb.log" "$RUN/url"
  mkdir -p "$RUN/data" "$RUN/sock"
  touch "$RUN/postgres.log" "$RUN/initdb.log"
  chown "$PG_USER:" "$RUN/data" "$RUN/sock" "$RUN/postgres.log" "$RUN/initdb.log"
  chmod 700 "$RUN/data"
  cd "$RUN"  # $PG_USER may not be able to read root's cwd; initdb/pg_ctl complain about that

  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

  as_pg "$bin/initdb" -D "$RUN/data" -U intake --auth=trust -E UTF8 --locale=C >"$RUN/initdb.log" 2>&1 \
    || fail_start "initdb failed" "$RUN/initdb.log"

  launch "$bin" "$port"

  "$bin/createdb" -h 127.0.0.1 -p "$port" -U intake "$DB" 2>>"$RUN/postgres.log" \
    || { stop "$RUN"; fail_start "createdb $DB failed" "$RUN/postgres.log"; }

  echo "postgresql+asyncpg://intake@127.0.0.1:$port/$DB" | tee "$RUN/url"
}

# Start a stopped cluster again with its data and port (what `start` printed stays valid).
resume() {
  [[ $EUID -eq 0 ]] || die "must run as root (it runs the server as $PG_USER)"
  RUN="$(cd "$1" 2>/dev/null && pwd)" || die "no run dir $1; use start"
  [[ -f "$RUN/url" && -d "$RUN/data" ]] || die "nothing to resume in $RUN; use start"
  local bin port
  bin="$(find_bin)" || die "no PostgreSQL server binaries; use install"
  is_running "$bin" "$RUN" && die "a server is already running for $RUN"
  port="$(sed -n 's|.*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$RUN/url")"
  [[ -n "$port" ]] || die "no port in $RUN/url"
  cd "$RUN"
  launch "$bin" "$port"
  cat "$RUN/url"
}

stop() {
  local run bin
  run="$(cd "$1" 2>/dev/null && pwd)" || return 0
  bin="$(find_bin)" || return 0
  is_running "$bin" "$run" || return 0
  (cd "$run" && as_pg "$bin/pg_ctl" -D "$run/data" -m fast -w -t 60 stop >/dev/null)
}

case "${1:-}" in
  install) install ;;
  start) [[ $# -eq 2 ]] || die "usage: postgres.sh start <run-dir>"; start "$2" ;;
  stop)  [[ $# -eq 2 ]] || die "usage: postgres.sh stop <run-dir>";  stop "$2" ;;
  resume) [[ $# -eq 2 ]] || die "usage: postgres.sh resume <run-dir>"; resume "$2" ;;
  *) die "usage: postgres.sh {install | start <run-dir> | stop <run-dir> | resume <run-dir>}" ;;
esac
