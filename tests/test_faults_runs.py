"""Run folders whose files were edited or swapped, a bad ``--pretrained`` file, and messages: each is one line
naming the file or the flag the user typed (never a config key, a pydantic report or torch's advice), and
nothing is written that a rerun would trip over.

Cases: a ``last.safetensors`` of another run, a ``best.safetensors`` copied over it (a warning), a corrupted
``config.json`` or ``log.jsonl``, a pickle payload or garbage as ``--pretrained``, ``--seeds`` / ``--milestones``
/ ``--tfam-stage`` / ``--checkpoint-every-min`` out of range, ``--out '' --fresh``, FIFOs and symbolic-link
loops, a NaN checkpoint in ``evaluate``, and predict's note on the checkpoint's classes printed once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from piumr.checkpoint import read_checkpoint, save_checkpoint
from piumr.config import with_overrides
from piumr.model import PIUmrNet
from test_faults import RUN, checkpoints, finished_run, invoke, run_copy, snapshot, write_clip
from test_faults_disk import one_line

__all__ = ["checkpoints", "finished_run", "run_copy"]  # fixtures shared with test_faults


# ------------------------------------------------------------------------------ resume


def test_resume_refuses_a_last_checkpoint_of_another_run(run_copy: Path) -> None:
    last = run_copy / "last.safetensors"
    own = read_checkpoint(last)
    other = with_overrides(own.config, {"model.tfam.fusion": "mean"})  # another TFAM setting, same weights' shapes
    net = PIUmrNet(other.model)
    net.load_state_dict(own.model_state)
    save_checkpoint(last, net, other, epoch=0, step=int(own.meta["step"]), with_rng=True,
                    optimizer=torch.optim.AdamW(net.parameters()))
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 2  # was: resumed, and config.json rewritten to match
    line = one_line(res, last, "model.tfam.fusion", "config.json")
    assert "not this run's checkpoint" in line
    assert snapshot(run_copy) == before


def test_resume_warns_once_when_last_has_no_optimiser_or_rng_state(run_copy: Path) -> None:
    shutil.copy(run_copy / "best.safetensors", run_copy / "last.safetensors")
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, res.output  # was: no warning, and a resume that is not exact
    assert "last.safetensors holds no optimiser or RNG state" in warnings[0]


@pytest.mark.parametrize("payload", [5, "x", [1], {"a": 1}])
def test_corrupted_amendments_in_config_json_are_one_line(run_copy: Path, payload: object) -> None:
    cfg = run_copy / "config.json"
    data = json.loads(cfg.read_text())
    data["amendments"] = payload
    cfg.write_text(json.dumps(data))
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 2  # was: a TypeError traceback for 5
    one_line(res, cfg, "amendments")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("row", ['{"step": null}', '{"step": "abc"}', '{"step": true}'])
def test_corrupted_log_rows_are_one_line_naming_the_file(run_copy: Path, row: str) -> None:
    log = run_copy / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], row, *lines[1:]]) + "\n")
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 2  # was: a TypeError traceback (null), a line naming no file ("abc")
    one_line(res, log, "line 2")
    assert snapshot(run_copy) == before  # refused before the amendment was recorded


# ------------------------------------------------------------------------------ --pretrained


def _pickle_payload(path: Path) -> Path:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo payload ran",))

    torch.save({"model_state": Payload()}, path)
    return path


@pytest.mark.parametrize("kind", ["pickle", "garbage", "empty"])
def test_bad_pretrained_fails_before_config_json_in_one_line(kind: str, tmp_path: Path) -> None:
    bad = tmp_path / "k.pyth"
    if kind == "pickle":
        _pickle_payload(bad)
    else:
        bad.write_bytes(b"not a torch file" if kind == "garbage" else b"")
    out = tmp_path / "run"
    res = invoke(*RUN, "--pretrained", bad, "--out", out)
    assert res.exit_code == 2
    line = one_line(res, bad)
    assert "weights_only" not in res.output and "payload ran" not in res.output  # was: 3-6 lines of torch text
    assert not (out / "config.json").exists()  # was: written first, so the rerun was refused
    if kind == "pickle":
        assert "pickled Python objects are never loaded" in line


# ------------------------------------------------------------------------------ flags


@pytest.mark.parametrize("seed", ["-1", "99999999999999"])
def test_reproduce_seed_out_of_range_names_the_flag(seed: str) -> None:
    res = invoke("reproduce", "table2", "--data", "synth", "--preset", "tiny", "--plan", "--seeds", seed)
    line = one_line(res, f"--seeds {seed}")  # was: pydantic's 4-line report about "seed"
    assert "validation error" not in res.output and "0 to 4294967295" in line


@pytest.mark.parametrize("args, flag", [(["--milestones", "5,-1"], "--milestones"),
                                        (["--tfam-stage", "9"], "--tfam-stage 9")])
def test_train_errors_name_the_flag_not_the_config_key(args: list[str], flag: str, tmp_path: Path) -> None:
    res = invoke(*RUN, *args, "--out", tmp_path / "run")
    line = one_line(res, flag)
    assert "config:" not in line and "model.tfam.stage" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "abc"])
def test_checkpoint_every_min_that_is_not_a_number_says_so(value: str, tmp_path: Path) -> None:
    res = invoke(*RUN[:-2], "--checkpoint-every-min", value, "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert "--checkpoint-every-min" in res.output and "is not a number" in res.output, res.output


def test_out_empty_with_fresh_leaves_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    res = invoke(*RUN, "--out", "", "--fresh")
    one_line(res, "--fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # was: a stray .lock here


# ------------------------------------------------------------------------------ FIFOs, links, NaN, predict


def test_fifo_and_link_loop_are_named_as_what_they_are(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.mp4"
    os.symlink(loop, loop)
    one_line(invoke("predict", "--checkpoint", fifo, fifo), "--checkpoint", fifo, "FIFO")  # was: "no such ..."
    one_line(invoke("predict", "--checkpoint", checkpoints[0], loop), loop, "symbolic-link loop")
    one_line(invoke("evaluate", "--checkpoint", checkpoints[0], "--data", loop), loop, "symbolic-link loop")
    # a FIFO among clips is reported (never opened: reading it would wait forever), the good clip predicted
    res = invoke("predict", "--json", "--checkpoint", checkpoints[0], fifo, write_clip(tmp_path / "a.mp4"))
    assert res.exit_code == 1
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert "FIFO" in rows[0]["error"] and rows[1]["error"] is None


def test_evaluate_of_a_nan_checkpoint_names_the_file(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    res = invoke("evaluate", "--checkpoint", checkpoints[1], "--out", tmp_path / "ev")
    assert res.exit_code == 2
    one_line(res, checkpoints[1], "not finite")  # was: "error: scores contain NaN"


def test_predict_describes_the_checkpoint_once_not_after_every_clip(checkpoints: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    clips = [write_clip(tmp_path / f"{n}.mp4") for n in "abc"]
    res = invoke("predict", "--checkpoint", checkpoints[0], *clips)
    assert res.exit_code == 0, res.output
    assert res.output.count("body group") == 3
    assert " ".join(res.output.split()).count("checkpoint trained on") == 1, res.output  # was: 3


def test_reproduce_option_out_of_range_names_the_flag() -> None:
    res = invoke("reproduce", "table2", "--data", "synth", "--preset", "tiny", "--plan", "--max-steps-per-epoch", "0")
    one_line(res, "--max-steps-per-epoch 0")  # was: pydantic's 4-line report about max_steps_per_epoch
    assert "validation error" not in res.output
