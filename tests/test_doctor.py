"""``piumr doctor`` and ``bench/gpu_check.sh``: the CPU report, its JSON, the checks behind ``--full``.

GPU-only tests carry ``@pytest.mark.gpu`` (``bench/gpu_check.sh`` runs them on a lent GPU); they skip here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from piumr.config import get_preset
from piumr.data.splits import resolve_root
from piumr.doctor.data import MA52_SIZES, verify_cache
from piumr.doctor.full import check_kernels, synthetic_steps, x3d_depthwise_shapes
from piumr.doctor.speed import FAST_PATH_UNAVAILABLE, project, train_speed
from piumr_cli.main import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL = ["--preset", "tiny", "--data", "synth", "--device", "cpu", "--iters", "1", "--warmup", "1",
         "--loader-seconds", "1"]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One CPU doctor run with a small preset, as its JSON (its synthetic set generated beforehand)."""
    resolve_root(get_preset("tiny").data, progress=False)
    res = runner.invoke(app, ["doctor", "--json", *SMALL])
    assert res.exit_code == 0, res.output
    rep: dict[str, Any] = json.loads(res.stdout)
    return rep


def test_doctor_cpu_json_report(report: dict[str, Any]) -> None:
    rep = report
    assert rep["schema"] == 1 and rep["preset"] == "tiny" and rep["device"] == "cpu"
    assert {k: rep["measurement"][k] for k in ("kind", "batch", "iters", "warmup", "loader_seconds")} == {
        "kind": "short", "batch": 1, "iters": 1, "warmup": 1, "loader_seconds": 1}  # short on CPU: batch 1
    v = rep["versions"]
    assert v["packages"]["torch"]["version"] == torch.__version__.split("+")[0] or \
        v["packages"]["torch"]["version"] == torch.__version__
    assert Path(v["piumr_path"]) == REPO / "src" / "piumr"
    assert all(v["packages"][p]["importable"] for p in ("torch", "pytorchvideo", "decord", "av"))
    assert rep["devices"][0]["type"] == "cpu" and isinstance(rep["devices"][0]["bf16"], bool)
    data = rep["data"]
    assert data["kind"] == "synth" and data["cache"] is None and data["splits"]["train"] > 0 and data["generated"]
    t = rep["train"]
    for name in ("x3d", "piumr"):
        assert t[name]["batch"] == 1 and (t[name]["frames"], t[name]["crop"]) == (4, 32)
        assert t[name]["clips_per_s"] > 0 and t[name]["peak_mem_gib"] > 0
    assert t["piumr-fast"] == {"skipped": FAST_PATH_UNAVAILABLE}
    lo = rep["loader"]
    assert lo["clips_per_s"] > 0 and lo["workers"] == get_preset("tiny").data.num_workers
    b = rep["bottleneck"]
    assert b["model"] == "piumr" and b["model_clips_per_s"] == t["piumr"]["clips_per_s"]
    assert b["slower"] == ("loader" if lo["clips_per_s"] < t["piumr"]["clips_per_s"] else "model")
    slower_rate = min(lo["clips_per_s"], t["piumr"]["clips_per_s"])
    ma52 = rep["projection"]["ma52"]
    assert ma52["train_clips"] == MA52_SIZES["train"] == 11250
    assert ma52["epoch_s"] == pytest.approx(11250 / slower_rate)
    assert ma52["full_run_s"] == pytest.approx(ma52["epoch_s"] * get_preset("tiny").optim.epochs)
    assert rep["projection"]["found"]["train_clips"] == data["splits"]["train"]
    assert rep["problems"] == [] and "full" not in rep


def test_doctor_table_output(report: dict[str, Any]) -> None:
    from piumr_cli import doctor as cli_doctor

    with cli_doctor._out.capture() as cap:
        cli_doctor._print(report)
    text = cap.get()
    for needle in ("piumr doctor: preset tiny on cpu", "train piumr-fast", "not available on CPU", "bottleneck",
                   "projection (MA-52)", "11250 clips", "short: batch 1", "(short CPU measurement"):
        assert needle in text


def test_doctor_default_on_cpu_is_short_and_generates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default CPU doctor measures batch 1 and one step per variant, and does not generate a synthetic set
    that is not there yet (the paper preset's takes minutes): it says so and skips that loader measurement."""
    monkeypatch.setenv("PIUMR_CACHE", str(tmp_path / "cache"))
    res = runner.invoke(app, ["doctor", "--json", "--preset", "tiny", "--data", "synth", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert {k: rep["measurement"][k] for k in ("kind", "batch", "iters", "warmup", "loader_seconds")} == {
        "kind": "short", "batch": 1, "iters": 1, "warmup": 1, "loader_seconds": 3.0}
    assert rep["train"]["piumr"]["batch"] == 1 and rep["train"]["piumr"]["clips_per_s"] > 0
    assert rep["data"]["generated"] is False and rep["data"]["splits"]["train"] == 24  # tiny: 6 persons x 8 clips
    assert "not generated yet" in rep["loader"]["skipped"] and rep["bottleneck"]["slower"] == "unknown"
    assert not (tmp_path / "cache").exists() and rep["problems"] == []
    assert "short CPU measurement: batch 1, 1 + 1 steps per variant" in res.stderr


def test_doctor_full_on_cpu_prints_its_estimate_first_and_measures_long(report: dict[str, Any]) -> None:
    res = runner.invoke(app, ["doctor", "--json", "--full", *SMALL])
    assert res.exit_code == 0, res.output
    first = next(ln for ln in res.stderr.splitlines() if ln.startswith("doctor:"))
    assert first.startswith("doctor: full CPU measurement: batch 4, 1 + 1 steps per variant") and "(estimate)" in first
    rep = json.loads(res.stdout)
    assert rep["measurement"]["kind"] == "full" and rep["measurement"]["estimate_s"] > 0
    assert rep["train"]["piumr"]["batch"] == 4 and "full" not in rep and rep["problems"] == []
    from piumr_cli import doctor as cli_doctor

    with cli_doctor._out.capture() as cap:
        cli_doctor._print(rep)
    assert "GPU checks" in cap.get() and "not run: kernels" in cap.get()


def test_doctor_bad_inputs(tmp_path: Path) -> None:
    res = runner.invoke(app, ["doctor", "--data", str(tmp_path / "nope"), "--device", "cpu"])
    assert res.exit_code == 2 and "nope" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["doctor", "--preset", "nosuch"])
    assert res.exit_code == 2 and "nosuch" in res.output
    if not torch.cuda.is_available():
        res = runner.invoke(app, ["doctor", *SMALL[:4], "--device", "cuda"])
        assert res.exit_code == 2 and "cuda" in res.output.lower() and "Traceback" not in res.output


def test_verify_cache_finds_missing_truncated_and_altered_files(tmp_path: Path) -> None:
    from piumr.data import PreparedCache, prepare_dataset
    from piumr.data.synth import generate

    raw = tmp_path / "raw"
    generate(raw, persons=4, clips_per_person=2, classes_per_body=1, frames=6, size=32, seed=1, progress=False)
    prepare_dataset(raw, tmp_path / "cache", splits=("train",), short_side=32, workers=1, progress=False)
    cache = PreparedCache(tmp_path / "cache")
    ok = verify_cache(cache, hash_clips=-1)
    assert ok["verified"] and ok["hashed"] == len(cache) >= 3
    keys = list(cache.clips)
    files = [cache.root / (k + ".jpgs") for k in keys]
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:-1])
    data = bytearray(files[2].read_bytes())
    data[-1] ^= 0xFF
    files[2].write_bytes(bytes(data))
    bad = verify_cache(PreparedCache(tmp_path / "cache"), hash_clips=-1)
    assert not bad["verified"]
    assert bad["missing"] == [keys[0]] and bad["wrong_size"] == [keys[1]] and bad["wrong_hash"] == [keys[2]]
    assert verify_cache(PreparedCache(tmp_path / "cache"), hash_clips=0)["wrong_hash"] == []  # sizes only


def test_project_uses_the_slower_rate() -> None:
    p = project(10.0, 5.0, 100, 3)
    assert (p["clips_per_s"], p["epoch_s"], p["full_run_s"]) == (5.0, 20.0, 60.0)
    assert project(10.0, None, 100, 3)["epoch_s"] == 10.0


def test_x3d_m_depthwise_shapes() -> None:
    shapes = x3d_depthwise_shapes("x3d_m", 16, 224)
    assert shapes[0] == (54, 16, 112, 112, 2) and shapes[-1] == (432, 16, 7, 7, 1)
    assert len(shapes) == 8 and {s[4] for s in shapes} == {1, 2}


def test_synthetic_steps_learn_on_cpu() -> None:
    res = synthetic_steps(get_preset("tiny"), torch.device("cpu"), steps=10, batch=8, bf16=False)
    assert res["finite"] and res["falling"] and res["ok"], res["losses"]
    assert res["fast_path_convs"] == 0 and len(res["losses"]) == 10


def test_check_kernels_under_the_interpreter() -> None:
    """The --full kernel check, run by the Triton CPU interpreter at small shapes (a GPU runs X3D-M sizes)."""
    code = textwrap.dedent("""
        import json, torch
        from piumr.doctor.full import check_kernels
        rows = check_kernels([(3, 3, 5, 6, 1), (2, 2, 7, 5, 2)], 2, torch.device("cpu"))
        print(json.dumps(rows))
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["ok"] for r in rows] == [True, True], rows
    assert all(e < 1e-5 for r in rows for e in r["float32"].values())  # small sizes: the interpreter tests' bound
    assert all(r["bfloat16"]["y"] > 0 for r in rows)  # the bf16 run really ran in bf16 (output rounding shows)


def test_check_kernels_reports_a_wrong_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that computes the wrong thing (here: the filter mirrored along W) fails the check."""
    import torch.nn.functional as F

    import piumr.doctor.full as full

    class Mirrored:
        @staticmethod
        def apply(x: torch.Tensor, w: torch.Tensor, s: int) -> torch.Tensor:
            return F.conv3d(x, w.flip(-1), None, (1, s, s), 1, 1, x.shape[1])

    monkeypatch.setattr(full, "DepthwiseConv3dFunction", Mirrored)
    (row,) = check_kernels([(2, 2, 5, 5, 1)], 1, torch.device("cpu"))
    assert not row["ok"] and row["float32"]["y"] > 0.1 and row["float32"]["grad_x"] > 0.1


@pytest.mark.slow
def test_gpu_check_script_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PIUMR_GPU_CHECK_CPU": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PIUMR_WHEELS": str(tmp_path / "no_wheels"), "PIUMR_GPU_WORK": str(tmp_path / "work")}
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(out)], env=env, capture_output=True,
                         text=True, timeout=480)
    summary = json.loads((out / "summary.json").read_text())
    assert res.returncode == 0 and summary["ok"], (summary, res.stdout[-3000:])
    assert summary["cpu_mode"] is True
    assert {k: summary[k] for k in ("wheels", "project", "torch_kept", "synth", "doctor", "pytest")} == dict.fromkeys(
        ("wheels", "project", "torch_kept", "synth", "doctor", "pytest"), 0)
    rep = json.loads((out / "doctor.json").read_text())
    assert rep["preset"] == "tiny" and rep["problems"] == [] and rep["data"]["path"] == str(tmp_path / "work" / "synth")
    assert Path(rep["versions"]["piumr_path"]) == REPO / "src" / "piumr"  # the tree, not another install
    assert Path(rep["versions"]["executable"]).parent == tmp_path / "work" / "venv" / "bin"
    assert "torch before:" in (out / "install.log").read_text()
    assert "skipped" in (out / "pytest.log").read_text()
    assert (out / "env.txt").stat().st_size > 0


@pytest.mark.gpu
@cuda
def test_gpu_kernels_match_reference_at_x3d_m_sizes() -> None:
    rows = check_kernels(x3d_depthwise_shapes("x3d_m", 16, 224), 4, torch.device("cuda"), time_iters=3)
    assert all(r["ok"] for r in rows), rows


@pytest.mark.gpu
@cuda
def test_gpu_fast_path_training_learns() -> None:
    res = synthetic_steps(get_preset("smoke"), torch.device("cuda"), steps=30, batch=12)
    assert res["fast_path_convs"] > 0 and res["ok"], res["losses"]


@pytest.mark.gpu
@cuda
def test_gpu_train_speed_measures_the_fast_path() -> None:
    t = train_speed(get_preset("tiny"), torch.device("cuda"), batch=8, iters=2, warmup=1)
    assert all(t[v]["clips_per_s"] > 0 and t[v]["device"].startswith("cuda") for v in ("x3d", "piumr", "piumr-fast"))
