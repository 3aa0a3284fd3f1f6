#!/usr/bin/env bash
# One call on a lent GPU machine, <= 8 minutes wall: the speed measurements of docs/benchmarks.md ("GPU lease"),
# in priority order, each under its own time limit, results.json rewritten after each one (a timeout keeps
# what was done). Nothing is installed over the machine's torch: carried wheels (bench/gpu_wheels*.txt, as for
# bench/gpu_check.sh) go into a private --target folder, the project runs from its source tree (PYTHONPATH).
# Writes into OUT: results.json (every item: status, wall seconds, compute_s, numbers), lease.log (all output),
# depthwise_tiles.json (Triton tiles per shape, for `piumr train --speed tiles=FILE`), env.txt.
#
# usage: bench/gpu_lease.sh OUT
# environment:
#   PIUMR_LEASE_CPU=1   CPU mode: the same items at tiny sizes on the CPU (CI runs it: tests/test_gpu_lease.py)
#   PYTHON              interpreter that carries torch (default: python3)
#   PIUMR_WHEELS        wheel folder (default: .whl; absent in CPU mode: this environment's packages are used)
#   PIUMR_GPU_WORK      scratch folder (default: .gpu-lease)
#   PIUMR_LEASE_BUDGET  seconds for the whole run (default: 470; CPU mode 110)
#   PIUMR_LEASE_ITEMS   items to run (default: all, in order)
#   PIUMR_LEASE_SCALE   multiply every item's time limit (and the budget) by this integer (default 1)
set -uo pipefail

[ $# = 1 ] || { echo "usage: bench/gpu_lease.sh OUT" >&2; exit 2; }
mkdir -p "$1" || { echo "error: cannot create OUT $1" >&2; exit 2; }
OUT=$(realpath "$1")
cd "$(dirname "$0")/.." || exit 2
WHEELS=${PIUMR_WHEELS:-.whl}
PY=${PYTHON:-python3}
WORK=$(mkdir -p "${PIUMR_GPU_WORK:-.gpu-lease}" && cd "${PIUMR_GPU_WORK:-.gpu-lease}" && pwd)
CPU_MODE=${PIUMR_LEASE_CPU:-0}
START=$(date +%s)
LOG=$OUT/lease.log
: >"$LOG"
if [ "$CPU_MODE" = 1 ]; then
  BUDGET=${PIUMR_LEASE_BUDGET:-110}; FLAG=--cpu
  # seconds per item: calibrate profile matrix depthwise loader compile batch160
  declare -A LIMIT=([calibrate]=20 [profile]=30 [matrix]=60 [depthwise]=20 [loader]=60 [compile]=0 [batch160]=30)
else
  BUDGET=${PIUMR_LEASE_BUDGET:-470}; FLAG=
  declare -A LIMIT=([calibrate]=20 [profile]=45 [matrix]=150 [depthwise]=90 [loader]=90 [compile]=120 [batch160]=60)
fi
SCALE=${PIUMR_LEASE_SCALE:-1}
BUDGET=$(( BUDGET * SCALE ))
ITEMS=${PIUMR_LEASE_ITEMS:-calibrate profile matrix depthwise loader compile batch160}

# 1. packages: carried wheels into a private folder; torch must be the machine's own before and after
TORCH_BEFORE=$("$PY" -c "import torch; print(torch.__version__, torch.__file__)" 2>&1)
SITE=$WORK/site
if [ -n "$(ls -A "$WHEELS" 2>/dev/null)" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --find-links "$WHEELS" \
    -r bench/gpu_wheels.txt -r bench/gpu_wheels_built.txt >>"$LOG" 2>&1 || echo "[wheels] install failed (see lease.log)"
fi
# the project from its source tree: src/ holds piumr, cli/ is the package piumr_cli once installed
mkdir -p "$WORK/pkgs" && ln -sfn "$PWD/cli" "$WORK/pkgs/piumr_cli"
export PYTHONPATH=$PWD/src:$WORK/pkgs:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 PIUMR_CACHE=$WORK/cache
TORCH_AFTER=$("$PY" -c "import torch; print(torch.__version__, torch.__file__)" 2>&1)
{ date -u; git rev-parse HEAD 2>/dev/null; echo "torch before: $TORCH_BEFORE"; echo "torch after: $TORCH_AFTER"
  command -v nvidia-smi >/dev/null && nvidia-smi; } >"$OUT/env.txt" 2>&1

merge() {  # merge ITEM STATUS SECONDS: put WORK/ITEM.json (if any) into OUT/results.json, atomically
  "$PY" - "$OUT/results.json" "$WORK/$1.json" "$1" "$2" "$3" <<'EOF'
import json, os, sys
res_path, item_path, item, status, secs = sys.argv[1:]
res = json.load(open(res_path)) if os.path.isfile(res_path) else {}
row = {"status": status, "seconds": float(secs)}
if os.path.isfile(item_path):
    row.update(json.load(open(item_path)))
res[item] = row
tmp = res_path + ".tmp"
with open(tmp, "w") as f:
    json.dump(res, f, indent=1)
os.replace(tmp, res_path)
EOF
}

rm -f "$OUT/results.json"
if [ "$TORCH_BEFORE" != "$TORCH_AFTER" ]; then
  echo "error: torch changed under the carried packages ($TORCH_BEFORE -> $TORCH_AFTER)" | tee -a "$LOG"
  merge install failed 0
  exit 1
fi
FAILED=0
for item in $ITEMS; do
  left=$(( BUDGET - ($(date +%s) - START) ))
  limit=$(( ${LIMIT[$item]:-60} * SCALE ))
  [ "$limit" -gt "$left" ] && limit=$left
  rm -f "$WORK/$item.json"
  if [ "${LIMIT[$item]:-60}" = 0 ]; then
    echo "[$item] skipped: not run in this mode" | tee -a "$LOG"
    merge "$item" skipped 0
    continue
  fi
  if [ "$limit" -le 5 ]; then
    echo "[$item] skipped: ${left} s of the budget left" | tee -a "$LOG"
    merge "$item" skipped 0
    continue
  fi
  t0=$(date +%s)
  echo "[$item] start (limit ${limit} s)" >>"$LOG"
  timeout "$limit" "$PY" bench/gpu_lease.py "$item" "$WORK" $FLAG >>"$LOG" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124) status=timeout ;;
    *) status=failed; FAILED=1 ;;
  esac
  echo "[$item] $status after ${secs} s" | tee -a "$LOG"
  merge "$item" "$status" "$secs"
  [ -f "$WORK/depthwise_tiles.json" ] && cp "$WORK/depthwise_tiles.json" "$OUT/"
done
echo "total $(( $(date +%s) - START )) s" | tee -a "$LOG"
"$PY" bench/gpu_lease.py table "$OUT/results.json" | tee -a "$LOG"
exit $FAILED
