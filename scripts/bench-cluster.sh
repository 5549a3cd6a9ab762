#!/usr/bin/env bash
# The demo DAG locally against a Ballista cluster on this machine (1 and 2 executors),
# same run, fresh stores: wall time per node and in all, as ratios to the local run,
# and the bytes executors wrote for transfer (shuffle and result files in their work
# dirs, fetched over Arrow Flight by the next stage or by the client).
#
#   bash scripts/bench-cluster.sh            # needs scripts/setup.sh first
#   DAG=dags/corpus.toml bash scripts/bench-cluster.sh
#
# Task slots are equal in every setting: the local run uses all cores; one executor
# gets all cores; two executors get half each. --partitions is the core count.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DAG="${DAG:-dags/demo.toml}"
CORES="$(nproc)"
OUT="$(mktemp -d /tmp/speechmill-bench-cluster.XXXXXX)"
BIN="$REPO/target/debug/speechmill"
# A failed run must not leave a cluster behind.
trap 'for d in "$OUT"/*-cluster; do [ -d "$d" ] && SPEECHMILL_CLUSTER_DIR="$d" deploy/local-cluster.sh stop >/dev/null 2>&1; done; true' EXIT

echo "building speechmill..." >&2
cargo build --bin speechmill >&2

# run NAME [--cluster ...]: runs the DAG into a fresh store, keeps its summary.
run() {
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$BIN" run "$DAG" --store "$OUT/store-$name" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  end=$(date +%s.%N)
  echo "total $(python3 -c "print(f'{$end-$start:.1f}')")" >>"$OUT/$name.txt"
}

# cluster NAME EXECUTORS SLOTS: deploy/local-cluster.sh up, the run, then down.
cluster() {
  local name="$1" executors="$2" slots="$3" address
  export SPEECHMILL_BIN="$BIN" SPEECHMILL_SCHEDULER_PORT=0 SPEECHMILL_CLUSTER_DIR="$OUT/$name-cluster" \
    SPEECHMILL_EXECUTOR_ARGS="--concurrent-tasks $slots"
  address="$(deploy/local-cluster.sh start "$executors" 2>/dev/null)"
  run "$name" --cluster "$address" --partitions "$CORES"
  du -sb "$OUT/$name-cluster"/executor-*/ | awk '{s+=$1} END {print "moved", s+0}' >>"$OUT/$name.txt"
  deploy/local-cluster.sh stop 2>/dev/null
}

echo "warm-up (page cache, model files)..." >&2
run warmup
echo "local..." >&2
run local
echo "1 executor ($CORES slots)..." >&2
cluster one 1 "$CORES"
echo "2 executors ($((CORES / 2 > 0 ? CORES / 2 : 1)) slots each)..." >&2
cluster two 2 "$((CORES / 2 > 0 ? CORES / 2 : 1))"

python3 - "$OUT" "$DAG" <<'PY'
import sys, os
out, dag = sys.argv[1], sys.argv[2]
def parse(name):
    nodes, total, moved = {}, None, None
    for line in open(os.path.join(out, name + ".txt")):
        f = line.split()
        if not f: continue
        if f[0] == "total": total = float(f[1])
        elif f[0] == "moved": moved = int(f[1])
        elif len(f) >= 8 and f[3] == "ran" and f[-1].endswith("s"):
            nodes[f[0]] = float(f[-1][:-1])
    return nodes, total, moved
local, one, two = (parse(n) for n in ("local", "one", "two"))
print(f"\n{dag}: wall seconds per node (same run, fresh stores)")
print(f"{'node':<16} {'local':>8} {'1 exec':>8} {'ratio':>7} {'2 exec':>8} {'ratio':>7}")
for node, t in local[0].items():
    a, b = one[0].get(node), two[0].get(node)
    r = lambda x: f"{x / t:.2f}x" if x is not None and t > 0 else "-"
    print(f"{node:<16} {t:>8.1f} {a or 0:>8.1f} {r(a):>7} {b or 0:>8.1f} {r(b):>7}")
print(f"{'whole run':<16} {local[1]:>8.1f} {one[1]:>8.1f} {one[1]/local[1]:>6.2f}x {two[1]:>8.1f} {two[1]/local[1]:>6.2f}x")
mb = lambda b: f"{b / 1e6:.1f} MB"
print(f"bytes written by executors for transfer (shuffle + results): 1 exec {mb(one[2])}, 2 exec {mb(two[2])}")
print(f"logs and stores: {out}")
PY
