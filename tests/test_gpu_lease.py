"""bench/gpu_lease.sh in its CPU mode (what CI runs): every item runs in order at tiny sizes, results.json holds
each one's status and numbers, the table is printed, and torch is the environment's own before and after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ITEMS = ("calibrate", "profile", "matrix", "depthwise", "loader", "compile", "batch160")


def test_cpu_mode_runs_every_item(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # PIUMR_LEASE_SCALE: the limits are sized for an idle machine (110 s in all); a shared one gets 5x
    env = {**os.environ, "PIUMR_LEASE_CPU": "1", "PYTHON": sys.executable, "PIUMR_GPU_WORK": str(tmp_path / "work"),
           "OMP_NUM_THREADS": "1", "PIUMR_LEASE_SCALE": "5", "PIUMR_WHEELS": str(tmp_path / "no-wheels")}
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_lease.sh"), str(out)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results) == list(ITEMS)
    for item, row in results.items():
        assert row["status"] == ("skipped" if item == "compile" else "ok"), (item, row)
    assert results["calibrate"]["result"]["copy_tb_s"] > 0 and results["calibrate"]["result"]["bf16_tflop_s"] > 0
    matrix = results["matrix"]["result"]
    assert {"x3d_plain", "piumr", "channels_last", "uint8_on_device", "depthwise_aten"} <= set(matrix)
    assert all(row["clips_per_s"] > 0 for row in matrix.values()), matrix
    assert results["profile"]["result"]["ms_by_category"]["conv depthwise"] > 0
    rows = results["loader"]["result"]["rows"]
    assert {(r["workers"], r["dtype"]) for r in rows} == {(0, "float32"), (0, "uint8"), (1, "float32"), (1, "uint8")}
    assert all(r["source"] == "prepared cache" and r["clips_per_pass"] >= 48 and r["batches"] >= 1 for r in rows)
    assert json.loads((out / "depthwise_tiles.json").read_text()) == {}  # Triton tiles are tuned on CUDA only
    env_txt = (out / "env.txt").read_text().splitlines()
    before = [ln for ln in env_txt if ln.startswith("torch before: ")][0].removeprefix("torch before: ")
    assert f"torch after: {before}" in env_txt
    table = res.stdout.splitlines()
    assert any(ln.startswith("calibrate") and "TB/s" in ln for ln in table)
    assert len(list(out.iterdir())) <= 8  # what a lease's $OUT may bring back
