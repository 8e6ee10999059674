#!/usr/bin/env bash
# Prometheus tools for checks and tests (Debian's `prometheus` package: the server and promtool).
#
#   prometheus.sh install   apt-get install prometheus if promtool or prometheus is missing;
#                           never leaves the package's system service running
#   prometheus.sh check     promtool check config + check rules + test rules on this folder
#   prometheus.sh path      print the prometheus server binary (for tests), or fail
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "prometheus.sh: $*" >&2; exit 1; }

have() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }

install() {
  have && return 0
  [[ $EUID -eq 0 ]] || die "promtool/prometheus missing; install Debian's prometheus package (needs root)"
  echo "prometheus.sh: installing Prometheus via apt" >&2
  # Keep the package from starting its system service: we only want the binaries.
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created=1
  fi
  local status=0
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; } >&2 \
    || status=$?
  [[ -n "$created" ]] && rm -f "$policy"
  # Should a service have started anyway (an init without policy-rc.d), stop it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
  if [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
  [[ $status -eq 0 ]] || die "apt-get install prometheus failed"
  have || die "apt installed prometheus but promtool or prometheus is not on PATH"
}

check() {
  install
  cd "$HERE"
  promtool check config prometheus.yml
  promtool check rules alerts.yml
  promtool test rules alerts_test.yml
}

case "${1:-}" in
  install) install ;;
  check) check ;;
  path) have && command -v prometheus || die "prometheus is not installed" ;;
  *) die "usage: prometheus.sh {install | check | path}" ;;
esac
