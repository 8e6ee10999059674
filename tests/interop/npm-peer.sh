#!/usr/bin/env bash
# Run a peer from the npm registry: tests/interop/<peer>/ holds its package.json, the
# package-lock.json that pins it (with integrity hashes) and its entry script. Installed once
# with `npm ci` into ~/.cache/register-intake/<peer> (again when any of the three changes), then
# run with node, stdin, stdout and the remaining arguments passed on.
#
#   tests/interop/npm-peer.sh ajv validate.mjs
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEER="$1" ENTRY="$2"
shift 2
SRC="$HERE/$PEER"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/register-intake/$PEER"
want="$(cat "$SRC/package.json" "$SRC/package-lock.json" "$SRC/$ENTRY" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$CACHE/marker" || "$(cat "$CACHE/marker")" != "$want" ]]; then
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$SRC/$ENTRY" "$CACHE/"
  (cd "$CACHE" && npm ci --ignore-scripts --no-audit --no-fund >"$CACHE/install.log" 2>&1) \
    || { cat "$CACHE/install.log" >&2; echo "npm-peer.sh: npm ci failed for $PEER" >&2; exit 2; }
  echo "$want" >"$CACHE/marker"
fi
exec node "$CACHE/$ENTRY" "$@"
