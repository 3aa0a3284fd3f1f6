"""Training loop: runs, logs, checkpoints, exact resume, and DDP with gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from piumr.checkpoint import read_checkpoint
from piumr.config import PRESETS, OptimConfig, with_overrides
from piumr.train import lr_at, train

FAST = {"optim.epochs": 3, "max_steps_per_epoch": 2, "optim.milestones": (2,), "data.num_workers": 0}


def test_lr_schedule_matches_paper() -> None:
    o = OptimConfig()
    assert [lr_at(o, e) for e in (0, 29, 30, 59, 60, 119)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_train_writes_everything(tmp_path: Path) -> None:
    cfg = with_overrides(PRESETS["tiny"], FAST)
    res = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for f in ("config.json", "log.jsonl", "last.safetensors", "best.safetensors", "metrics.json", "summary.json",
              "predictions_val.csv"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    assert all(0 <= r["val"]["f1_mean"] <= 100 for r in epochs)
    assert res.steps == 6
    ck = read_checkpoint(run / "last.safetensors")
    assert ck.meta["epoch"] == 2 and ck.optim_state is not None and ck.config == cfg


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = with_overrides(PRESETS["tiny"], FAST)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "killed", progress=False, stop_after_epoch=0)  # what a run killed after epoch 0 leaves
    assert read_checkpoint(tmp_path / "killed" / "last.safetensors").meta["epoch"] == 0
    resumed = train(cfg, tmp_path / "killed", resume=True, progress=False)
    assert resumed.final == full.final
    a = read_checkpoint(tmp_path / "full" / "last.safetensors").model_state
    b = read_checkpoint(tmp_path / "killed" / "last.safetensors").model_state
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_ddp_gloo_two_processes(tmp_path: Path) -> None:
    """torchrun --nproc-per-node 2 -m piumr train ... on CPU with the gloo backend."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "piumr", "train", "--preset", "tiny", "--data", "synth", "--out", str(tmp_path / "ddp"),
           "--epochs", "1", "--max-steps-per-epoch", "2", "--workers", "0", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # validation scores were gathered from both ranks: every val clip counted once
    from piumr.data.splits import load_split

    assert metrics["clips"] == len(load_split(PRESETS["tiny"].data, "val"))


def test_broken_clip_is_skipped_and_counted(tmp_path: Path) -> None:
    """A multi-epoch run never dies on one bad file (on_error=skip) and says which file it skipped."""
    import shutil

    from piumr.data.splits import resolve_root

    root = tmp_path / "data"
    shutil.copytree(resolve_root(PRESETS["tiny"].data), root, symlinks=False)
    first = (root / "train_list_videos.txt").read_text().split()[0]
    (root / "train" / first).write_bytes(b"not a video at all")
    cfg = with_overrides(PRESETS["tiny"], {"data.root": str(root), "optim.epochs": 1, "data.num_workers": 0})
    res = train(cfg, tmp_path / "run", progress=False)
    assert any(p.endswith(first) for p in res.skipped)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any(p.endswith(first) for p in summary["skipped_clips"])
    raising = with_overrides(cfg, {"data.on_error": "raise"})
    from piumr.data import VideoError

    with pytest.raises(VideoError, match=first):
        train(raising, tmp_path / "run2", progress=False)


def test_checkpoint_is_given_its_training_data(tmp_path: Path) -> None:
    """``trained_on`` comes from the training records the run holds (``data.splits.trained_on``); the checkpoint
    stores what it is given and reads no data (a module-level cache keyed by $PIUMR_CACHE once lived there)."""
    import ast

    from piumr.checkpoint import save_checkpoint
    from piumr.data.ma52 import ClipRecord
    from piumr.data.splits import trained_on
    from piumr.model import PIUmrNet

    cfg = PRESETS["tiny"]
    records = [ClipRecord(tmp_path / f"{i}.mp4", a, 0, "p1", None, None) for i, a in enumerate((5, 2, 5))]
    info = trained_on(cfg, records)
    assert info == {"kind": "synthetic", "root": "synth", "split": cfg.data.split, "fold": cfg.data.fold,
                    "classes": [2, 5], "head": cfg.model.num_classes, "task": cfg.data.synth_task}
    assert trained_on(with_overrides(cfg, {"data.root": str(tmp_path)}), records)["kind"] == "MA-52"
    assert trained_on(with_overrides(cfg, {"data.synth_task": 2}), records)["task"] == 2
    from piumr.data.manifest import MA52_CLASSES
    from piumr.data.splits import class_info, fit_head

    # validation metrics, predictions_val.csv, evaluate's confusion: task v2's labels named by what they show
    v2 = with_overrides(cfg, {"data.synth_task": 2})
    assert class_info(v2.data).names[0] == "torso bows: once" and class_info(cfg.data) is MA52_CLASSES
    assert fit_head(v2) is v2  # the head stays as configured: only a manifest's classes.csv sizes it
    (tmp_path / "synth_meta.json").write_text('{"version": "2", "task": 2}')  # a generated task-v2 folder
    assert trained_on(with_overrides(cfg, {"data.root": str(tmp_path)}), records)["task"] == 2
    path = save_checkpoint(tmp_path / "m.safetensors", PIUmrNet(cfg.model), cfg, epoch=0, step=0, trained_on=info)
    assert read_checkpoint(path).meta["trained_on"] == info
    src = Path(__file__).resolve().parents[1] / "src" / "piumr" / "checkpoint.py"
    imported = {n.module for n in ast.walk(ast.parse(src.read_text())) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith("piumr.data")}, imported
