#!/usr/bin/env bash
# usage: studies/mechanisms/queue.sh SNAPSHOT_SRC BATCH LISTFILE  -- runs arms.py for each line "ARM SPLIT SEED [JSON]"
# in order, niced, one thread, with the piumr source of SNAPSHOT_SRC (a copy of src/, so edits made meanwhile do not
# leak in); an arm whose result JSON is already in artifacts/mechanisms/BATCH/ is skipped
snap=$1; batch=$2; list=$3
here=$(cd "$(dirname "$0")" && pwd)
results=$(cd "$here/../../artifacts/mechanisms" && pwd)
while read -r arm split seed json; do
  [ -z "$arm" ] && continue
  [ -f "$results/$batch/${arm}_${split}_s${seed}.json" ] && continue
  PYTHONPATH=$snap OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 "${PY:-python}" "$here/arms.py" "$batch" "$arm" "$split" "$seed" ${json:+"$json"}
done < "$list"
