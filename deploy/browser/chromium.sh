#!/usr/bin/env bash
# Headless Chromium for the review UI's browser tests (Debian's `chromium` package; Playwright
# drives it as the system executable, it never downloads a browser of its own).
#
#   chromium.sh install   apt-get install chromium when it is missing
#   chromium.sh path      print the chromium binary, or fail
set -euo pipefail

die() { echo "chromium.sh: $*" >&2; exit 1; }

binary() { command -v chromium || command -v chromium-browser; }

install() {
  binary >/dev/null 2>&1 && return 0
  [[ $EUID -eq 0 ]] || die "chromium is missing; install Debian's chromium package (needs root)"
  echo "chromium.sh: installing Chromium via apt" >&2
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } >&2 \
    || die "apt-get install chromium failed"
  binary >/dev/null 2>&1 || die "apt installed chromium but it is not on PATH"
}

case "${1:-}" in
  install) install ;;
  path) binary || die "chromium is not installed" ;;
  *) die "usage: chromium.sh {install | path}" ;;
esac
