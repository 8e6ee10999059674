#!/usr/bin/env bash
# kustomize for the Kubernetes manifest tests (deploy/k8s), from the Go module proxy.
#
#   kustomize.sh install   go install sigs.k8s.io/kustomize/kustomize/v5 at the pinned version
#                          into ~/.cache/register-intake/bin when it is not there; prints its path
set -euo pipefail

VERSION=v5.7.1  # needs Go >= 1.22; v5.8 needs a newer Go than this machine's
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/register-intake/bin"

die() { echo "kustomize.sh: $*" >&2; exit 1; }

install() {
  local have="$BIN/kustomize"
  if [[ -x "$have" && "$("$have" version 2>/dev/null)" == "$VERSION" ]]; then
    echo "$have"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go is needed to install kustomize $VERSION"
  mkdir -p "$BIN"
  echo "kustomize.sh: installing kustomize $VERSION from the Go module proxy" >&2
  GOBIN="$BIN" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2 \
    || die "go install sigs.k8s.io/kustomize/kustomize/v5@$VERSION failed"
  echo "$have"
}

case "${1:-}" in
  install) install ;;
  *) die "usage: kustomize.sh install" ;;
esac
