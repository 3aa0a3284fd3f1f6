#!/usr/bin/env bash
# One command for a lent GPU machine: install the project next to the machine's own torch (never reinstalled),
# from the wheels carried in .whl/ (docs/benchmarks.md, "GPU check"), then run `piumr doctor --full --json` and
# the GPU tests (pytest -m gpu). Writes into OUT_DIR:
#   install.log, env.txt, synth.log, doctor.json, doctor.log, pytest.log, summary.json
# Exit status: 0 when every step passed, 1 otherwise (summary.json says which).
#
# usage: bench/gpu_check.sh OUT_DIR
# environment:
#   PIUMR_GPU_CHECK_CPU=1  CPU mode: same steps on the CPU with the `tiny` preset and no --full (proves that
#                          everything up to the CUDA calls works; tests/test_doctor.py runs it)
#   PYTHON                 interpreter that carries torch (default: python3)
#   PIUMR_WHEELS           wheel folder (default: .whl)
#   PIUMR_GPU_WORK         scratch folder for the virtual environment and the synthetic clips (default: .gpu)
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bench/gpu_check.sh OUT_DIR" >&2
  exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "error: cannot create OUT_DIR $1" >&2; exit 2; }
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${PIUMR_WHEELS:-.whl}
WORK=${PIUMR_GPU_WORK:-.gpu}
CPU_MODE=${PIUMR_GPU_CHECK_CPU:-0}
VENV=$WORK/venv
START=$(date +%s)
declare -A RC

if [ "$CPU_MODE" = "1" ]; then
  DOCTOR=(--preset tiny --device cpu --iters 2 --warmup 1 --loader-seconds 2)
  DOCTOR_TIMEOUT=120
  SYNTH_PRESET=tiny
else
  DOCTOR=(--full --iters 10 --warmup 3 --loader-seconds 10)
  DOCTOR_TIMEOUT=300
  SYNTH_PRESET=paper
fi

step() {  # step NAME TIMEOUT_S LOGFILE CMD...: run CMD with a time limit, keep its exit status
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$(date +%s)
  timeout "$limit" "$@" >>"$log" 2>&1
  RC[$name]=$?
  echo "[$name] exit ${RC[$name]} after $(( $(date +%s) - t0 )) s (log: $log)"
}

torch_version() { "$1" -c "import torch; print(torch.__version__, torch.__file__)" 2>&1; }

# 1. install: a venv that sees the system torch, the carried wheels, the project itself (all --no-deps)
mkdir -p "$WORK"
: >"$OUT/install.log"
TORCH_BEFORE=$(torch_version "$PY")
# --without-pip: the venv then sees the system's pip and setuptools instead of seeding older copies
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages --without-pip "$VENV" >>"$OUT/install.log" 2>&1
VPY=$VENV/bin/python
# when $PY itself runs in a virtual environment, --system-site-packages reaches only the base interpreter's
# packages: point the new venv at $PY's own site-packages as well (they then come after the venv's own)
OUTER=$("$PY" -c "import sys, sysconfig; print(sysconfig.get_paths()['purelib'] if sys.prefix != sys.base_prefix else '')")
if [ -n "$OUTER" ]; then
  echo "$OUTER" >"$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/outer-env.pth"
fi
if "$VPY" -m pip --version >/dev/null 2>&1; then PIP=("$VPY" -m pip); else PIP=("$PY" -m pip --python "$VPY"); fi
# a setuptools that builds wheels by itself (>= 70.1) is used in place; otherwise pip builds in isolation
# with the setuptools wheel carried in $WHEELS
BUILD=()
"$VPY" -c "from setuptools.command.bdist_wheel import bdist_wheel" 2>/dev/null && BUILD=(--no-build-isolation)
if [ "${PIUMR_GPU_CHECK_CPU:-0}" = 1 ] && [ -z "$(ls -A "$WHEELS" 2>/dev/null)" ]; then
  # CPU mode without carried wheels: this environment's own packages stand in for them
  echo "[wheels] skipped: CPU mode and no wheels in $WHEELS" | tee -a "$OUT/install.log"
  RC[wheels]=0
else
  step wheels 180 "$OUT/install.log" "${PIP[@]}" install --no-index --find-links "$WHEELS" --no-deps \
    -r bench/gpu_wheels.txt -r bench/gpu_wheels_built.txt
fi
step project 120 "$OUT/install.log" "${PIP[@]}" install --no-index --find-links "$WHEELS" --no-deps "${BUILD[@]}" -e .
TORCH_AFTER=$(torch_version "$VPY")
if [ "$TORCH_BEFORE" = "$TORCH_AFTER" ]; then RC[torch_kept]=0; else RC[torch_kept]=1; fi
echo "torch before: $TORCH_BEFORE | after: $TORCH_AFTER" | tee -a "$OUT/install.log"

# 2. what the machine is
{
  date -u
  git rev-parse HEAD 2>/dev/null || echo "no git checkout"
  command -v nvidia-smi >/dev/null && nvidia-smi
  "$VPY" -m pip list 2>/dev/null
} >"$OUT/env.txt" 2>&1

# 3. a small synthetic MA-52-format set for the loader measurement (the clip sizes stay the preset's)
: >"$OUT/synth.log"
step synth 120 "$OUT/synth.log" "$VENV/bin/piumr" synth --out "$WORK/synth" --preset "$SYNTH_PRESET" --persons 4 --clips-per-person 6 \
  --classes-per-body 1 --workers 4

# 4. the doctor (JSON on stdout, progress on stderr)
: >"$OUT/doctor.log"
timeout "$DOCTOR_TIMEOUT" "$VENV/bin/piumr" doctor --json --data "$WORK/synth" "${DOCTOR[@]}" \
  >"$OUT/doctor.json" 2>>"$OUT/doctor.log"
RC[doctor]=$?
echo "[doctor] exit ${RC[doctor]} (json: $OUT/doctor.json, log: $OUT/doctor.log)"

# 5. the GPU tests (skipped, not failed, on a machine without CUDA)
: >"$OUT/pytest.log"
step pytest 120 "$OUT/pytest.log" "$VPY" -m pytest -m gpu -q -p no:cacheprovider

# 6. summary
FAILED=0
SUMMARY="{\"cpu_mode\": $([ "$CPU_MODE" = "1" ] && echo true || echo false), \"seconds\": $(( $(date +%s) - START ))"
for k in wheels project torch_kept synth doctor pytest; do
  SUMMARY+=", \"$k\": ${RC[$k]}"
  [ "${RC[$k]}" = "0" ] || FAILED=1
done
SUMMARY+=", \"ok\": $([ $FAILED = 0 ] && echo true || echo false)}"
echo "$SUMMARY" | tee "$OUT/summary.json"
exit $FAILED
