#!/usr/bin/env bash
# Local Kafka (KRaft, broker+controller in one JVM per node) for development and tests.
#
#   kafka.sh fetch             download/cache the broker jars (Maven Central) only
#   kafka.sh start <run-dir>   start a fresh broker; prints "127.0.0.1:<port>" (also <run-dir>/bootstrap)
#   kafka.sh stop  <run-dir>   stop it (no-op if it is not running)
#   kafka.sh resume <run-dir>  start a stopped broker again, same data and ports
#   kafka.sh cluster <run-dir> <N>
#                              start a fresh N-node cluster (every node broker and controller
#                              voter; internal topics with min(N, 3) replicas, min ISR one less);
#                              node k runs in <run-dir>/node-<k>, which stop/resume/SIGKILL act on
#                              alone; prints the bootstrap list (also <run-dir>/bootstrap)
#   kafka.sh cluster-stop <run-dir>
#                              stop every node of a cluster
#
# Jars are cached in ${INTAKE_CACHE_DIR:-~/.cache/register-intake}/kafka-3.9.1/libs.
# A node's run dir holds server.properties, data/ (wiped on each start), kafka.log, kafka.out,
# kafka.pid.
set -euo pipefail

KAFKA_VERSION=3.9.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${INTAKE_CACHE_DIR:-$HOME/.cache/register-intake}/kafka-$KAFKA_VERSION"
LIBS="$CACHE/libs"
# The marker records the pom's hash, so editing pom.xml triggers a re-fetch.
MARKER="$CACHE/libs.fetched"
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  local want
  want="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)"
  [[ -f "$MARKER" && "$(cat "$MARKER")" == "$want" ]] && return 0
  mkdir -p "$CACHE"
  # Serialise concurrent fetches (e.g. parallel test sessions sharing the cache).
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$want" ]]; then
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars into $LIBS" >&2
    rm -rf "$LIBS.tmp"
    mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$CACHE/fetch.log" 2>&1 \
      || { cat "$CACHE/fetch.log" >&2; die "mvn dependency:copy-dependencies failed"; }
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    echo "$want" >"$MARKER"
  fi
  exec 9>&-
}

# $1 (default 2) distinct free loopback ports. The sockets stay open until all are chosen,
# so the kernel cannot hand out the same port twice.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
' "${1:-2}"
}

# Prints the broker pid if it is alive. The cmdline check guards against a stale
# pid file whose pid has since been reused by some unrelated process.
running_pid() {
  local pidfile="$1/kafka.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q 'kafka\.Kafka' && echo "$pid"
}

fail_start() {
  echo "kafka.sh: $1; last 80 lines of $RUN/kafka.log:" >&2
  tail -n 80 "$RUN/kafka.log" >&2 2>/dev/null || true
  tail -n 20 "$RUN/kafka.out" >&2 2>/dev/null || true
  stop "$RUN" >/dev/null 2>&1 || true
  exit 1
}

# Sets RUN to the run dir's absolute path and JAVA to java with the broker's classpath and logging.
use_run_dir() {
  mkdir -p "$1"
  RUN="$(cd "$1" && pwd)"
  JAVA=(java -cp "$LIBS/*" -Dkafka.logs.dir="$RUN" -Dlog4j.configuration="file:$HERE/log4j.properties")
}

# write_properties <node-id> <port> <controller-port> <voters> <replicas>: this node's
# server.properties in $RUN. <voters> is controller.quorum.voters; <replicas> the replication
# factor of the internal topics (offsets, transaction state), whose min ISR is one less.
write_properties() {
  local id="$1" port="$2" cport="$3" voters="$4" replicas="$5"
  local min_isr=$((replicas > 1 ? replicas - 1 : 1))
  cat >"$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=$replicas
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
# Room for ~16 MB records plus batch overhead (20 MiB).
message.max.bytes=20971520
replica.fetch.max.bytes=20971520
PROPS
}

# format <cluster-id>: a fresh data dir for the node in $RUN.
format() {
  rm -rf "$RUN/data" "$RUN/kafka.log" "$RUN/kafka.out" "$RUN/bootstrap"
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$1" -c "$RUN/server.properties" >"$RUN/kafka.out" 2>&1 \
    || fail_start "storage format failed"
}

start() {
  use_run_dir "$1"
  if running_pid "$RUN" >/dev/null; then die "a broker is already running for $RUN (pid $(cat "$RUN/kafka.pid")); stop it first"; fi
  fetch

  local port cport
  read -r port cport < <(free_ports 2) || true
  [[ -n "${cport:-}" ]] || die "could not pick free ports"
  write_properties 1 "$port" "$cport" "1@127.0.0.1:$cport" 1
  format "$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)"
  launch "$port"
}

cluster() {
  local top n
  mkdir -p "$1"
  top="$(cd "$1" && pwd)"
  n="$2"
  [[ "$n" =~ ^[1-9]$ ]] || die "a cluster has 1 to 9 nodes, not '$n'"
  fetch
  local ports=() voters="" k
  read -r -a ports < <(free_ports $((2 * n))) || true
  ((${#ports[@]} == 2 * n)) || die "could not pick free ports"
  for ((k = 1; k <= n; k++)); do
    voters+="${voters:+,}$k@127.0.0.1:${ports[2 * k - 1]}"
  done
  local replicas=$((n < 3 ? n : 3)) cluster_id bootstrap=""
  use_run_dir "$top/node-1"
  cluster_id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)"
  for ((k = 1; k <= n; k++)); do
    use_run_dir "$top/node-$k"
    if running_pid "$RUN" >/dev/null; then die "node $k is already running in $RUN; cluster-stop first"; fi
    write_properties "$k" "${ports[2 * k - 2]}" "${ports[2 * k - 1]}" "$voters" "$replicas"
    format "$cluster_id"
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[2 * k - 2]}"
  done
  # Every node's JVM at once: a controller quorum needs a majority of voters before any
  # broker comes up, so starting them one by one and waiting would never finish.
  for ((k = 1; k <= n; k++)); do
    use_run_dir "$top/node-$k"
    spawn
  done
  for ((k = 1; k <= n; k++)); do
    use_run_dir "$top/node-$k"
    wait_serving "${ports[2 * k - 2]}" >/dev/null
  done
  echo "$bootstrap" | tee "$top/bootstrap"
}

# Every node at once: stopped one by one, the last ones wait for a controller quorum that has
# already gone (30 s each). A cluster's data is for tests: after 15 s the rest are killed.
cluster_stop() {
  local node pid pids=()
  for node in "$1"/node-*; do
    pid="$(running_pid "$node")" || continue
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$node")
  done
  for _ in $(seq 150); do
    local alive=0
    for node in "${pids[@]}"; do running_pid "$node" >/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for node in "${pids[@]}"; do
    pid="$(running_pid "$node")" && kill -KILL "$pid" 2>/dev/null || true
    while running_pid "$node" >/dev/null; do sleep 0.1; done
    rm -f "$node/kafka.pid"
  done
  return 0
}

# Start the JVM on an existing run dir and wait until it serves on $1.
launch() {
  spawn
  wait_serving "$1"
}

# Start the node's JVM in the background; its pid in $RUN/kafka.pid.
spawn() {
  # stdin/stdout/stderr all redirected so a caller capturing our output does not wait on the broker.
  nohup "${JAVA[@]}" -Xmx512m -Djava.awt.headless=true kafka.Kafka "$RUN/server.properties" \
    </dev/null >>"$RUN/kafka.out" 2>&1 &
  echo $! >"$RUN/kafka.pid"
}

# Wait until the node in $RUN serves on port $1; prints its address.
wait_serving() {
  local port="$1" pid
  pid="$(cat "$RUN/kafka.pid")"
  # Ready = port accepts TCP and the server logged its startup line. Liveness by the pid itself:
  # running_pid's command-line check can run before the child has exec'd java, and then it
  # reported a broker that was starting fine as exited.
  local deadline=$((SECONDS + START_TIMEOUT))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
        && grep -q "Kafka Server started" "$RUN/kafka.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail_start "broker exited during startup"
    ((SECONDS < deadline)) || fail_start "broker not ready after ${START_TIMEOUT}s"
    sleep 0.2
  done
  echo "127.0.0.1:$port" | tee "$RUN/bootstrap"
}

# Start a stopped broker again with its data and ports (for fault tests: the same address).
resume() {
  use_run_dir "$1"
  [[ -f "$RUN/server.properties" ]] || die "nothing to resume in $RUN; use start"
  if running_pid "$RUN" >/dev/null; then die "a broker is already running for $RUN"; fi
  fetch
  local port
  port="$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$RUN/server.properties")"
  : >"$RUN/kafka.log"  # the readiness check looks for this start's line only
  launch "$port"
}

stop() {
  local run="$1" pid
  pid="$(running_pid "$run")" || { rm -f "$run/kafka.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  # running_pid (not kill -0) so an unreaped zombie counts as stopped.
  for _ in $(seq 300); do  # 30 s for a clean shutdown
    running_pid "$run" >/dev/null || break
    sleep 0.1
  done
  if running_pid "$run" >/dev/null; then
    echo "kafka.sh: broker $pid ignored SIGTERM for 30s; killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while running_pid "$run" >/dev/null; do sleep 0.1; done
  fi
  rm -f "$run/kafka.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) [[ $# -eq 2 ]] || die "usage: kafka.sh start <run-dir>"; start "$2" ;;
  stop)  [[ $# -eq 2 ]] || die "usage: kafka.sh stop <run-dir>";  stop "$2" ;;
  resume) [[ $# -eq 2 ]] || die "usage: kafka.sh resume <run-dir>"; resume "$2" ;;
  cluster) [[ $# -eq 3 ]] || die "usage: kafka.sh cluster <run-dir> <nodes>"; cluster "$2" "$3" ;;
  cluster-stop) [[ $# -eq 2 ]] || die "usage: kafka.sh cluster-stop <run-dir>"; cluster_stop "$2" ;;
  *) die "usage: kafka.sh {fetch | start <run-dir> | stop <run-dir> | resume <run-dir> | cluster <run-dir> <nodes> | cluster-stop <run-dir>}" ;;
esac
