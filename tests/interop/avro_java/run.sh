#!/usr/bin/env bash
# Fetch Apache Avro's Java library from Maven Central (cached in ~/.cache/register-intake),
# compile AvroRead.java and run it: run.sh <schema dir> <records file>.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/register-intake/avro-java"
want="$(cat "$HERE/pom.xml" "$HERE/AvroRead.java" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$CACHE/marker" || "$(cat "$CACHE/marker")" != "$want" ]]; then
  mkdir -p "$CACHE"
  rm -rf "$CACHE/lib" "$CACHE/classes"
  mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$CACHE/lib" >"$CACHE/fetch.log" 2>&1 \
    || { cat "$CACHE/fetch.log" >&2; echo "run.sh: mvn dependency:copy-dependencies failed" >&2; exit 2; }
  mkdir -p "$CACHE/classes"
  javac -d "$CACHE/classes" -cp "$CACHE/lib/*" "$HERE/AvroRead.java"
  echo "$want" >"$CACHE/marker"
fi
exec java -cp "$CACHE/classes:$CACHE/lib/*" AvroRead "$@"
