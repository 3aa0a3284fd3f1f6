"""The loader measurement (piumr.data.bench.loader_throughput, `piumr bench loader`, the doctor's loader figure):
it decodes (never the in-memory cache), cycles through >= 48 clips from one long-lived loader, and a batch larger
than the split no longer means one batch an epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from piumr.config import get_preset, with_overrides
from piumr.data.bench import MIN_CLIPS, loader_throughput
from piumr.data.ma52 import read_split
from piumr.data.splits import resolve_root
from piumr.doctor.speed import loader_speed


@pytest.fixture(scope="module")
def synth_root() -> Path:
    return resolve_root(get_preset("tiny").data, False)


def test_batch_larger_than_the_split_still_measures_whole_passes(synth_root: Path) -> None:
    n = len(read_split(synth_root, "train"))
    batch = n + 5  # the old measurement: one batch an epoch, the loader restarting each time
    r = loader_throughput(synth_root, "train", 4, 32, 36, 0, batch, 0.5)
    assert r["distinct_clips"] == n and r["clips_per_pass"] >= max(MIN_CLIPS, 4 * batch)
    assert r["batches"] >= 1 and r["clips"] == r["batches"] * batch
    assert r["source"] == "raw videos" and r["decode"] == "cpu"  # the synthetic set: decoded, not the RAM cache
    assert r["dtype"] == "float32" and r["bytes_per_clip"] == 3 * 4 * 32 * 32 * 4


def test_uint8_clips_are_a_quarter_of_the_bytes(synth_root: Path) -> None:
    f32 = loader_throughput(synth_root, "train", 4, 32, 36, 0, 2, 0.2)
    u8 = loader_throughput(synth_root, "train", 4, 32, 36, 0, 2, 0.2, uint8=True)
    assert u8["dtype"] == "uint8" and u8["bytes_per_clip"] * 4 == f32["bytes_per_clip"]
    assert loader_throughput(synth_root, "train", 4, 32, 36, 0, 2, 0.2, gpu_decode=True) == {
        "not_run": "GPU JPEG decoding needs CUDA and a prepared cache"}


def test_doctor_loader_figure_is_such_a_measurement(synth_root: Path) -> None:
    cfg = with_overrides(get_preset("tiny"), {"data.num_workers": 1})
    r = loader_speed(cfg, synth_root, batch=80, seconds=0.5)
    assert r["workers"] == 1 and r["batch"] == 8 and r["clips_per_pass"] >= MIN_CLIPS
    assert r["source"] == "raw videos" and r["clips_per_s"] > 0


def test_bench_loader_command(synth_root: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "loader", "--data", "synth", "--preset", "tiny", "--workers", "0,1",
                                   "--dtype", "float32,uint8", "--seconds", "0.3", "--batch", "4", "--threads", "1"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output[res.output.index("["):])
    assert [(r["workers"], r["dtype"]) for r in rows] == [(0, "float32"), (0, "uint8"), (1, "float32"), (1, "uint8")]
    assert all(r["clips_per_s"] > 0 and r["clips_per_pass"] >= MIN_CLIPS for r in rows)


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "six"], "error: --workers 'six': give integers 0..256 separated by commas"),
    (["--dtype", "float16"], "error: --dtype 'float16': choose float32, uint8 or both"),
])
def test_bench_loader_bad_option_is_one_line(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["bench", "loader", "--data", "synth", "--preset", "tiny", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
