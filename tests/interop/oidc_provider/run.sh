#!/usr/bin/env bash
# Install oidc-provider from the npm registry as package-lock.json pins it (with its integrity
# hashes; cached in ~/.cache/register-intake), then run provider.mjs with the given config.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/register-intake/oidc-provider"
want="$(cat "$HERE/package.json" "$HERE/package-lock.json" "$HERE/provider.mjs" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$CACHE/marker" || "$(cat "$CACHE/marker")" != "$want" ]]; then
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/provider.mjs" "$CACHE/"
  (cd "$CACHE" && npm ci --ignore-scripts --no-audit --no-fund >"$CACHE/install.log" 2>&1) \
    || { cat "$CACHE/install.log" >&2; echo "run.sh: npm ci failed" >&2; exit 2; }
  echo "$want" >"$CACHE/marker"
fi
exec node "$CACHE/provider.mjs" "$@"
