#!/usr/bin/env bash
# Benchmark Commonlab against jupyter_server and the direct ZeroMQ floor, in one run.
#
#   bench/run.sh [--quick|--full] [--only REGEX] [--raw DIR] [--no-build] [--out FILE]
#
#   --quick      short samples (a few minutes in all)
#   --full       the full sample sizes (default; about 15 minutes on 2 cores)
#   --only RE    run only the steps whose name matches RE (e.g. '^cl\.idle'); with --raw, the
#                other steps' earlier results are kept, so a disturbed case can be rerun alone
#   --raw DIR    where the per-step JSON and logs go (default: bench/results/raw/<stamp>)
#   --no-build   use the Commonlab binary already built
#   --wait-quiet S  before each step, wait up to S seconds for the machine to be quiet (under 25%
#                busy over 2 s); the wait and the load before the step are recorded
#   --out FILE   the markdown report (default: bench/results/<date>-<machine-kind>[-quick].md)
#
# It uses the test venv (<repo>/.venv, made by scripts/python-env.sh), builds Commonlab in
# release under $CARGO_TARGET_DIR (default <repo>/target/bench), and calls the black-box scripts
# of the shared benchmark folder in place (default <repo>/../shared/bench, or $BENCH_SHARED).
# Every Commonlab server it starts gets a fresh data dir, root dir and IPYTHONDIR, and is
# stopped (SIGTERM, then SIGKILL) by pid, together with any kernel it left behind. The
# jupyter_server instances are launched and stopped by the shared scripts (--launch-jupyter).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MODE=full
ONLY=.
RAW=
BUILD=1
REPORT=
QUIET_MAX=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --only) ONLY="$2"; shift ;;
    --raw) RAW="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --wait-quiet) QUIET_MAX="$2"; shift ;;
    --out) REPORT="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "$(date +%H:%M:%S) $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

# ---- shared benchmark scripts -------------------------------------------------------------
SHARED="${BENCH_SHARED:-$ROOT/../shared/bench}"
[[ -f "$SHARED/jbench.py" && -f "$SHARED/exec_latency.py" ]] \
  || die "shared benchmark scripts not found at $SHARED (expected jbench.py, exec_latency.py, ...
next to the repository as ../shared/bench; set BENCH_SHARED=DIR to point elsewhere)"
SHARED="$(cd "$SHARED" && pwd)"

# ---- Python: the test venv -----------------------------------------------------------------
VENV="${COMMONLAB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "no venv at $VENV: create it with scripts/python-env.sh"
for pair in requests:requests websockets:websockets psutil:psutil websocket:websocket-client \
            jupyter_server:jupyter_server ipykernel:ipykernel jupyter_client:jupyter_client; do
  mod=${pair%%:*}; pkg=${pair#*:}
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    log "installing missing client package $pkg into $VENV"
    "$PY" -m pip install -q "$pkg" || die "could not install $pkg"
  fi
done

# ---- build ---------------------------------------------------------------------------------
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/bench}"
BIN="$CARGO_TARGET_DIR/release/commonlab"
if [[ $BUILD == 1 ]]; then
  log "cargo build --release -p commonlab (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p commonlab) || die "build failed"
  # what the binary was built from, for the report (also read back with --no-build)
  { (cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)
    (cd "$ROOT" && git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null) && echo false || echo true
    date -Iseconds; } > "$BIN.bench-build"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN (run without --no-build)"

# 10,000 websockets need 10,000+ descriptors in the client and in the server
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- output locations ----------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
[[ -n "$RAW" ]] || RAW="$HERE/results/raw/$STAMP-$MODE"
mkdir -p "$RAW"
RAW="$(cd "$RAW" && pwd)"
MEM_GB=$(awk '/^MemTotal/{printf "%d", $2/1048576 + 0.5}' /proc/meminfo)
KIND="$(nproc)cpu-${MEM_GB}gb"
if [[ -z "$REPORT" ]]; then
  suffix=; [[ $MODE == quick ]] && suffix=-quick
  REPORT="$HERE/results/$(date +%Y-%m-%d)-$KIND$suffix.md"
fi
COMMIT=unknown; DIRTY=true; BUILT=unknown
if [[ -f "$BIN.bench-build" ]]; then
  { read -r COMMIT; read -r DIRTY; read -r BUILT; } < "$BIN.bench-build"
fi
# a rerun into an earlier raw folder (--only) keeps that run's record
[[ -f "$RAW/run.json" && "$ONLY" != "." ]] || \
"$PY" - "$RAW/run.json" "$MODE" "$KIND" "$ONLY" "$COMMIT" "$DIRTY" "$BUILT" \
    "$(ulimit -n)" "$(nproc)" "$MEM_GB" <<'EOF'
import datetime, json, sys
f, mode, kind, only, commit, dirty, built, nofile, cpus, mem = sys.argv[1:]
json.dump({"mode": mode, "kind": kind, "only": only, "commit": commit, "dirty": dirty == "true",
           "binary_built": built,
           "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "ulimit_n": int(nofile), "cpus": int(cpus), "mem_gb": int(mem)}, open(f, "w"))
EOF

# ---- Commonlab server lifecycle ------------------------------------------------------------
CL_PID=; CL_TMP=; CL_URL=; CL_TOKEN=
descendants() {  # all descendants of pid $1
  local kids k
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null)
  for k in $kids; do echo "$k"; descendants "$k"; done
}
start_commonlab() {
  CL_TMP="$(mktemp -d -t commonlab-bench.XXXXXX)"
  mkdir -p "$CL_TMP/data" "$CL_TMP/root" "$CL_TMP/ipython"
  CL_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  env -u JUPYTER_TOKEN IPYTHONDIR="$CL_TMP/ipython" \
      JUPYTER_CONFIG_DIR="$CL_TMP/config" JUPYTER_RUNTIME_DIR="$CL_TMP/runtime" \
      "$BIN" serve --ip 127.0.0.1 --port 0 --token "$CL_TOKEN" \
      --data-dir "$CL_TMP/data" --root-dir "$CL_TMP/root" --python "$PY" \
      </dev/null 2>"$CL_TMP/server.log" >/dev/null &
  CL_PID=$!
  local i port
  for i in $(seq 1 600); do
    port=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$CL_TMP/server.log" 2>/dev/null | head -1 | sed 's/.*:\([0-9]*\)\//\1/')
    [[ -n "$port" ]] && break
    kill -0 "$CL_PID" 2>/dev/null || { tail -20 "$CL_TMP/server.log" >&2; CL_PID=; return 1; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { log "Commonlab did not print its URL"; stop_commonlab; return 1; }
  CL_URL="http://127.0.0.1:$port"
}
stop_commonlab() {  # stop_commonlab [LOGCOPY]
  [[ -n "$CL_PID" ]] || return 0
  local kids i p
  kids=$(descendants "$CL_PID")
  kill -TERM "$CL_PID" 2>/dev/null
  for i in $(seq 1 200); do kill -0 "$CL_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$CL_PID" 2>/dev/null; then
    log "Commonlab pid $CL_PID did not stop on SIGTERM within 20 s; SIGKILL"
    echo "bench: server did not stop on SIGTERM within 20 s" >> "$CL_TMP/server.log"
    kill -KILL "$CL_PID" 2>/dev/null
  fi
  wait "$CL_PID" 2>/dev/null
  for p in $kids; do
    if kill -0 "$p" 2>/dev/null; then
      echo "bench: pid $p outlived the server; SIGKILL" >> "$CL_TMP/server.log"
      kill -KILL "$p" 2>/dev/null
    fi
  done
  [[ -n "${1:-}" ]] && cp "$CL_TMP/server.log" "$1"
  rm -rf "$CL_TMP"
  CL_PID=; CL_TMP=
}
trap 'stop_commonlab; exit 130' INT TERM
trap 'stop_commonlab' EXIT

cpu_snap() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
rel() {  # a command line with the machine's paths replaced by repo-relative ones
  local s="$*"
  s=${s//$SHARED/..\/shared\/bench}; s=${s//$PY/.venv\/bin\/python}; s=${s//$HERE/bench}
  s=${s//$RAW/\$RAW}; s=${s//$CL_URL/\$URL}
  [[ -n "$CL_TOKEN" ]] && s=${s//$CL_TOKEN/\$TOKEN}
  [[ -n "$CL_PID" ]] && s=${s//--server-pid $CL_PID/--server-pid \$PID}
  echo "$s"
}

# wait_quiet: up to $QUIET_MAX s until the whole machine is under 25% busy over 2 s;
# sets QUIET_WAITED (s) and PRE_BUSY (busy fraction over the last 2 s window)
wait_quiet() {
  local t0 a b
  t0=$(date +%s); QUIET_WAITED=0; PRE_BUSY=
  while :; do
    a=$(cpu_snap); sleep 2; b=$(cpu_snap)
    PRE_BUSY=$(echo "$a $b" | awk '{d=$4-$2; printf "%.3f", (d > 0 ? ($3-$1)/d : 0)}')
    QUIET_WAITED=$(( $(date +%s) - t0 ))
    awk -v x="$PRE_BUSY" 'BEGIN{exit !(x < 0.25)}' && return 0
    (( QUIET_WAITED >= QUIET_MAX )) && return 0
  done
}

# step NAME TIMEOUT_S TARGET SCRIPT ARGS...   TARGET: cl (fresh Commonlab), jp (--launch-jupyter), floor
step() {
  local name=$1 to=$2 tgt=$3 script=$4; shift 4
  [[ "$name" =~ $ONLY ]] || return 0
  QUIET_WAITED=0; PRE_BUSY=
  if (( QUIET_MAX > 0 )); then
    wait_quiet
    log "   waited ${QUIET_WAITED}s for a quiet machine (busy before the step: $PRE_BUSY)"
  fi
  local target=()
  if [[ $tgt == cl ]]; then
    start_commonlab || { log "FAILED to start Commonlab for $name"; echo '{"rc": -1}' > "$RAW/$name.step"; return; }
    target=(--url "$CL_URL" --token "$CL_TOKEN" --server-pid "$CL_PID")
  elif [[ $tgt == jp ]]; then
    target=(--launch-jupyter)
  fi
  local cmd=("$PY" "$script" "$@" "${target[@]}" --out "$RAW/$name.json")
  local shown; shown="$(rel "${cmd[@]}")"
  log "== $name: $shown"
  rm -f "$RAW/$name.json"
  local s0 s1 t0 t1 rc
  s0=$(cpu_snap); t0=$(date +%s.%N)
  # SIGINT first so that the scripts' context managers stop the servers they launched
  PYTHONPATH="$SHARED" timeout -s INT -k 20 "$to" "${cmd[@]}" > "$RAW/$name.log" 2>&1
  rc=$?
  s1=$(cpu_snap); t1=$(date +%s.%N)
  local busy wall
  busy=$(echo "$s0 $s1" | awk '{d=$4-$2; printf "%.3f", (d > 0 ? ($3-$1)/d : 0)}')
  wall=$(echo "$t0 $t1" | awk '{printf "%.1f", $2-$1}')
  [[ $rc == 0 ]] || log "   FAILED rc=$rc ($name), see $RAW/$name.log"
  log "   done in ${wall}s, machine busy $busy"
  "$PY" - "$RAW/$name.step" "$rc" "$wall" "$busy" "$shown" "$tgt" "$QUIET_WAITED" "$PRE_BUSY" <<'EOF'
import json, sys
f, rc, wall, busy, cmd, tgt, waited, pre = sys.argv[1:]
json.dump({"rc": int(rc), "wall_s": float(wall), "machine_busy_frac": float(busy), "cmd": cmd,
           "target": tgt, "quiet_wait_s": int(waited), "busy_before": float(pre) if pre else None},
          open(f, "w"))
EOF
  [[ $tgt == cl ]] && stop_commonlab "$RAW/$name.server.log"
}

# Idle RSS of a fresh Commonlab (no kernel yet): VmRSS after a few seconds of idling.
idle_rss() {
  local name=cl.idle_rss
  [[ "$name" =~ $ONLY ]] || return 0
  start_commonlab || { log "FAILED to start Commonlab for $name"; return; }
  log "== $name"
  sleep 3
  "$PY" - "$CL_PID" "$CL_URL" "$CL_TOKEN" "$RAW/$name.json" <<'EOF'
import json, sys, time, psutil, requests
pid, url, tok, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
p = psutil.Process(pid)
def mem():
    m = p.memory_full_info()
    return {"rss_mb": round(m.rss / 2**20, 2), "uss_mb": round(m.uss / 2**20, 2),
            "pss_mb": round(m.pss / 2**20, 2), "threads": p.num_threads(), "fds": p.num_fds()}
fresh = mem()
h = {"Authorization": f"token {tok}"}
for path in ("/api/status", "/api/kernelspecs", "/api/kernels", "/api/sessions"):
    requests.get(url + path, headers=h, timeout=10)
time.sleep(2)
json.dump({"bench": "idle_rss", "results": {"fresh": fresh, "after_api_calls": mem()}}, open(out, "w"))
print(json.dumps(fresh))
EOF
  stop_commonlab "$RAW/$name.server.log"
}

# ---- sample sizes --------------------------------------------------------------------------
if [[ $MODE == quick ]]; then
  KS_N=8; EX_N=300; EX_W=30; JP_EX_N=100; JP_EX_W=10; CONC_D=10; CONC_W=3
  IDLE_BIG=10000; JP_IDLE_N=300; OUT_CASES=(--case lines100k --case block50mb)
else
  KS_N=20; EX_N=1000; EX_W=100; JP_EX_N=1000; JP_EX_W=100; CONC_D=30; CONC_W=5
  IDLE_BIG=10000; JP_IDLE_N=1000; OUT_CASES=(--case lines100k --case block50mb --case lines50mb)
fi
NODELAY='--jupyter-arg=--ServerApp.jpserver_extensions=jbench_nodelay=True'
NORATE='--jupyter-arg=--ZMQChannelsWebsocketConnection.limit_rate=False'
S="$SHARED"

log "mode $MODE, raw results in $RAW"
T_ALL=$(date +%s)

# idle server memory
idle_rss

# kernel start -> first result
step floor.start         600 floor "$S/direct_floor.py" start -n "$KS_N"
step cl.kernel_start     600 cl    "$S/kernel_start.py" -n "$KS_N"
step jp.kernel_start     600 jp    "$S/kernel_start.py" -n "$KS_N"
[[ $MODE == full ]] && step jp.kernel_start_nodelay 600 jp "$S/kernel_start.py" -n "$KS_N" "$NODELAY"

# execute round trips, sequential
step floor.exec          600 floor "$S/direct_floor.py" exec -n "$EX_N" --warmup "$EX_W"
step cl.exec_v1          600 cl    "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W"
step cl.exec_json        600 cl    "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W" --protocol json
step jp.exec_v1          600 jp    "$S/exec_latency.py" -n "$JP_EX_N" --warmup "$JP_EX_W"
step jp.exec_nodelay     600 jp    "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W" "$NODELAY"
[[ $MODE == full ]] && step jp.exec_nodelay_json 600 jp "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W" --protocol json "$NODELAY"

# execute round trips, 8 in flight
step floor.exec_w8       600 floor "$HERE/direct_window.py" -n "$EX_N" --warmup "$EX_W" --window 8
step cl.exec_w8          600 cl    "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W" --window 8
step jp.exec_w8_nodelay  600 jp    "$S/exec_latency.py" -n "$EX_N" --warmup "$EX_W" --window 8 "$NODELAY"

# large outputs
step floor.output        600 floor "$S/direct_floor.py" output "${OUT_CASES[@]}"
step cl.output_v1        600 cl    "$S/output_stream.py" "${OUT_CASES[@]}"
step cl.output_json      600 cl    "$S/output_stream.py" "${OUT_CASES[@]}" --protocol json
step jp.output_norate    600 jp    "$S/output_stream.py" "${OUT_CASES[@]}" "$NORATE"
[[ $MODE == full ]] && step jp.output_stock 600 jp "$S/output_stream.py" "${OUT_CASES[@]}"

# idle websockets on one kernel
step cl.idle_1000        600 cl    "$S/idle_conns.py" -n 1000 --step 100
step cl.idle_big         600 cl    "$S/idle_conns.py" -n "$IDLE_BIG" --step 1000 --max-seconds 400
step jp.idle             600 jp    "$S/idle_conns.py" -n "$JP_IDLE_N" --step 50
# fan-out with a lean client (raw sockets + epoll) so that the client's decoding is not the figure
step cl.fanout_1000      300 cl    "$HERE/fanout_probe.py" -n 1000 --repeat 5
step cl.fanout_10000     300 cl    "$HERE/fanout_probe.py" -n 10000 --repeat 5
step jp.fanout_250       300 jp    "$HERE/fanout_probe.py" -n 250 --repeat 5

# 20 kernels at once
step cl.concurrency      600 cl    "$S/concurrency.py" -k 20 --duration "$CONC_D" --warmup "$CONC_W"
step jp.concurrency      600 jp    "$S/concurrency.py" -k 20 --duration "$CONC_D" --warmup "$CONC_W"
[[ $MODE == full ]] && step jp.concurrency_nodelay 600 jp "$S/concurrency.py" -k 20 --duration "$CONC_D" --warmup "$CONC_W" "$NODELAY"

[[ $MODE == full ]] && step floor.transport 300 floor "$S/transport_floor.py" -n 10000

log "all steps done in $(( $(date +%s) - T_ALL ))s"
"$PY" "$HERE/report.py" "$RAW" --out "$REPORT" || die "report failed"
log "report: $REPORT"
