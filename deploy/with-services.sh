#!/usr/bin/env bash
# Run a command with Apache Kafka and PostgreSQL started on loopback for it, and stop them after;
# also names a Prometheus server binary for the tests that start their own.
#
#   deploy/with-services.sh .venv/bin/pytest
#
# Exports INTAKE_TEST_KAFKA_BOOTSTRAP, INTAKE_TEST_POSTGRES_URL, INTAKE_TEST_PROMETHEUS (the
# server binary) and INTAKE_TEST_CHROMIUM (the browser; both installed with Debian's packages when
# missing) for the tests. A service that
# cannot start fails the run when INTAKE_REQUIRE_SERVICES=1 (CI); otherwise it is reported and
# the tests that need it skip. INTAKE_SKIP_SERVICES=1 starts nothing (quick local runs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/intake-services.XXXXXX")"
chmod 755 "$RUN"  # the PostgreSQL server runs as its own user and must reach its data dir

cleanup() {
  "$HERE/kafka/kafka.sh" stop "$RUN/kafka" >/dev/null 2>&1 || true
  "$HERE/postgres/postgres.sh" stop "$RUN/postgres" >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT

unavailable() {
  if [[ "${INTAKE_REQUIRE_SERVICES:-}" == 1 ]]; then
    echo "with-services: $1 could not start and INTAKE_REQUIRE_SERVICES=1" >&2
    exit 1
  fi
  echo "with-services: $1 could not start; the tests that need it will skip" >&2
}

if [[ "${INTAKE_SKIP_SERVICES:-}" != 1 ]]; then
  if bootstrap="$("$HERE/kafka/kafka.sh" start "$RUN/kafka")"; then
    export INTAKE_TEST_KAFKA_BOOTSTRAP="$bootstrap"
    echo "with-services: Apache Kafka on $bootstrap" >&2
  else
    unavailable "Apache Kafka"
  fi
  if url="$("$HERE/postgres/postgres.sh" start "$RUN/postgres")"; then
    export INTAKE_TEST_POSTGRES_URL="$url"
    echo "with-services: PostgreSQL at ${url#*@}" >&2
  else
    unavailable "PostgreSQL"
  fi
  if "$HERE/prometheus/prometheus.sh" install && prometheus="$("$HERE/prometheus/prometheus.sh" path)"; then
    export INTAKE_TEST_PROMETHEUS="$prometheus"
    echo "with-services: Prometheus at $prometheus" >&2
  else
    unavailable "Prometheus"
  fi
  if "$HERE/browser/chromium.sh" install && chromium="$("$HERE/browser/chromium.sh" path)"; then
    export INTAKE_TEST_CHROMIUM="$chromium"
    echo "with-services: Chromium at $chromium" >&2
  else
    unavailable "Chromium"
  fi
fi

set +e
"$@"
status=$?
exit "$status"
