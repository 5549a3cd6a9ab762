#!/usr/bin/env bash
# A Ballista cluster on this machine: one scheduler and N executors, each a speechmill
# process in the background, for trying the cluster path and for tests.
#
#   deploy/local-cluster.sh start N    # prints df://127.0.0.1:PORT (the only line on stdout)
#   deploy/local-cluster.sh status     # one line per process; exit 1 unless all run
#   deploy/local-cluster.sh stop       # SIGTERM, then SIGKILL after 10 s
#
#   CLUSTER=$(deploy/local-cluster.sh start 2)
#   speechmill run dags/demo.toml --store s3://bucket/demo --cluster "$CLUSTER"
#
# Environment:
#   SPEECHMILL_BIN              the binary (default <repo>/target/release/speechmill:
#                               cargo build --release)
#   SPEECHMILL_SCHEDULER_PORT   scheduler port on 127.0.0.1 (default 50050; 0 = any free
#                               port, read back from the scheduler's log)
#   SPEECHMILL_CLUSTER_DIR      logs, pids, executor work dirs and the address
#                               (default /tmp/speechmill-cluster)
#   SPEECHMILL_EXECUTOR_ARGS    extra executor flags, e.g. "--concurrent-tasks 2"
#   SPEECHMILL_CLUSTER_TIMEOUT  seconds to wait for the scheduler (default 60)
# The processes inherit this shell's environment: AWS_* (S3 store), SPEECHMILL_CACHE
# (models), ORT_DYLIB_PATH, SPEECHMILL_LOG. Executors advertise 127.0.0.1 and pick their
# own free Flight and gRPC ports.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${SPEECHMILL_BIN:-$REPO/target/release/speechmill}"
DIR="${SPEECHMILL_CLUSTER_DIR:-/tmp/speechmill-cluster}"
PORT="${SPEECHMILL_SCHEDULER_PORT:-50050}"
TIMEOUT="${SPEECHMILL_CLUSTER_TIMEOUT:-60}"
HOST=127.0.0.1

say() { echo "[local-cluster] $*" >&2; }
die() { echo "local-cluster: error: $*" >&2; exit 1; }
usage() { echo "usage: $0 start N | stop | status" >&2; exit 2; }

# The processes this script started, by their pid files: scheduler first.
pidfiles() {
  [ -f "$DIR/scheduler.pid" ] && echo "$DIR/scheduler.pid"
  local f
  for f in "$DIR"/executor-*.pid; do
    [ -f "$f" ] && echo "$f"
  done
  return 0
}

# True when PID is alive and still runs speechmill SUBCOMMAND (not a reused pid).
is_ours() {
  local pid="$1" sub="$2" args
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    args="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
  else
    args="$(ps -p "$pid" -o args= 2>/dev/null)" || return 1
  fi
  [[ " $args " == *" $sub "* ]]
}

role_of() { # scheduler.pid -> scheduler, executor-3.pid -> executor
  local b
  b="$(basename "$1" .pid)"
  echo "${b%%-*}"
}

accepts() { # HOST PORT: something accepts TCP connections there
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

tail_log() {
  [ -f "$1" ] && sed 's/^/    /' <(tail -n 20 "$1") >&2
  return 0
}

stop_all() {
  local f pid role stopped=0 waited
  local -a pids=() files=()
  # executors first (executor-*.pid sorts before scheduler.pid), then the scheduler
  mapfile -t files < <(pidfiles | sort)
  for f in "${files[@]}"; do
    pid="$(cat "$f" 2>/dev/null || true)"
    role="$(role_of "$f")"
    if is_ours "$pid" "$role"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      say "stopping $(basename "$f" .pid) (pid $pid)"
    fi
  done
  for pid in "${pids[@]}"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    stopped=$((stopped + 1))
  done
  for f in "${files[@]}"; do
    rm -f "$f"
  done
  rm -f "$DIR/address"
  say "stopped $stopped process(es)"
}

start() {
  local n="${1:-}" i pid port line deadline f
  local -a files=()
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || usage
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "SPEECHMILL_SCHEDULER_PORT=$PORT is not a port number"
  [ -x "$BIN" ] || die "$BIN not found or not executable: run 'cargo build --release' (or set SPEECHMILL_BIN)"
  "$BIN" scheduler --help >/dev/null 2>&1 || die "$BIN has no 'scheduler' subcommand: rebuild it (cargo build --release)"
  "$BIN" executor --help >/dev/null 2>&1 || die "$BIN has no 'executor' subcommand: rebuild it (cargo build --release)"
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  mapfile -t files < <(pidfiles)
  for f in "${files[@]}"; do
    if is_ours "$(cat "$f" 2>/dev/null || true)" "$(role_of "$f")"; then
      die "a cluster is already running from $DIR ('$0 status', '$0 stop')"
    fi
    rm -f "$f"
  done
  if [ "$PORT" != 0 ] && accepts "$HOST" "$PORT"; then
    die "$HOST:$PORT is already in use: stop what listens there or set SPEECHMILL_SCHEDULER_PORT"
  fi
  # Whatever fails from here on, stop what was started.
  trap 'say "start failed; stopping what was started"; stop_all' ERR
  trap 'stop_all; exit 130' INT TERM

  nohup "$BIN" scheduler --bind "$HOST:$PORT" >"$DIR/scheduler.log" 2>&1 </dev/null &
  echo $! >"$DIR/scheduler.pid"
  say "scheduler: pid $!, log $DIR/scheduler.log"

  # Wait for the scheduler: its "scheduler listening on HOST:PORT" line (the real port
  # when PORT is 0), then a TCP connection.
  deadline=$((SECONDS + TIMEOUT))
  port=""
  while :; do
    pid="$(cat "$DIR/scheduler.pid")"
    if ! kill -0 "$pid" 2>/dev/null; then
      say "the scheduler exited; its log:"
      tail_log "$DIR/scheduler.log"
      false
    fi
    if [ -z "$port" ]; then
      line="$(grep -m1 -o 'scheduler listening on [^ ]*' "$DIR/scheduler.log" 2>/dev/null || true)"
      if [ -n "$line" ]; then
        port="${line##*:}"
      elif [ "$PORT" != 0 ]; then
        port="$PORT"
      fi
    fi
    if [ -n "$port" ] && accepts "$HOST" "$port"; then
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "the scheduler did not accept connections on $HOST:${port:-?} within ${TIMEOUT}s; its log:"
      tail_log "$DIR/scheduler.log"
      false
    fi
    sleep 0.2
  done
  say "scheduler: listening on $HOST:$port"

  for i in $(seq 1 "$n"); do
    mkdir -p "$DIR/executor-$i"
    # shellcheck disable=SC2086 # SPEECHMILL_EXECUTOR_ARGS is a list of flags
    nohup "$BIN" executor --scheduler "$HOST:$port" --bind "$HOST" --external-host "$HOST" \
      --work-dir "$DIR/executor-$i" ${SPEECHMILL_EXECUTOR_ARGS:-} \
      >"$DIR/executor-$i.log" 2>&1 </dev/null &
    echo $! >"$DIR/executor-$i.pid"
    say "executor-$i: pid $!, log $DIR/executor-$i.log"
  done
  # Executors that fail at once (bad flag, no model cache, port clash) die within a
  # second or two; say so now rather than at the first job.
  sleep 2
  for i in $(seq 1 "$n"); do
    if ! kill -0 "$(cat "$DIR/executor-$i.pid")" 2>/dev/null; then
      say "executor-$i exited; its log:"
      tail_log "$DIR/executor-$i.log"
      false
    fi
  done
  trap - ERR INT TERM
  echo "df://$HOST:$port" >"$DIR/address"
  say "cluster up: 1 scheduler, $n executor(s); stop with '$0 stop'"
  echo "df://$HOST:$port"
}

status() {
  local f pid role any=0 bad=0 state
  local -a files=()
  mapfile -t files < <(pidfiles)
  for f in "${files[@]}"; do
    any=1
    pid="$(cat "$f" 2>/dev/null || true)"
    role="$(role_of "$f")"
    if is_ours "$pid" "$role"; then
      state="running"
    else
      state="not running"
      bad=1
    fi
    printf '%-12s pid %-8s %-12s log %s\n' "$(basename "$f" .pid)" "${pid:-?}" "$state" "${f%.pid}.log"
  done
  if [ "$any" = 0 ]; then
    echo "no cluster in $DIR"
    return 1
  fi
  [ -f "$DIR/address" ] && echo "address      $(cat "$DIR/address")"
  return "$bad"
}

case "${1:-}" in
  start) shift; [ $# -le 1 ] || usage; start "${1:-}" ;;
  stop) [ $# -eq 1 ] || usage; stop_all ;;
  status) [ $# -eq 1 ] || usage; status ;;
  *) usage ;;
esac
