"""Curves and figures people look at: a run's ``curves.png``, ``piumr plot``'s overlay and final-metrics table,
``evaluate``'s confusion figure and per-class CSV, and TensorBoard scalars (``--tensorboard``)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from piumr.config import PRESETS, with_overrides
from piumr.errors import MissingExtraError
from piumr.plots import (
    COMPARE, CONFUSION, CURVES, FINAL_COLUMNS, FINAL_CSV, FINAL_MD, PER_CLASS, confusion_figure, is_piumr_png,
    read_curves,
)
from piumr.run_folder import amendments
from piumr.train import train
from piumr_cli.flags import RESUME_OPTIONS, TRAIN_OPTIONS, config_overrides
from piumr_cli.main import app

FAST = {"optim.epochs": 3, "max_steps_per_epoch": 2, "optim.milestones": (1,), "data.num_workers": 0}
runner = CliRunner()


def invoke(*args: object) -> Result:
    """Run the CLI; a crash (an exception other than the exit) or a traceback fails the test."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output, res.output
    return res


def one_error_line(res: Result, *names: object) -> str:
    """The one ``error: ...`` line of a refused command (exit 2), naming each of ``names``."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def ratio(a: str | int, b: int | None = None) -> object:
    """A per_class.csv cell as a number to compare to 1e-5 (None: empty), or ``a / b`` the same way."""
    if b is None:
        return None if a == "" else pytest.approx(float(a), abs=1e-5)
    return None if b == 0 else int(a) / b


def epoch_rows(run: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "epoch"]


def fake_run(folder: Path, losses: list[float], top1: list[float | None], lr: float = 1e-3) -> Path:
    """A run folder holding only a ``log.jsonl`` (epoch rows with these numbers, a step row and a resume row, as
    a real log has) and a ``config.json``: what ``piumr plot`` reads."""
    folder.mkdir(parents=True)
    rows: list[dict[str, Any]] = [{"type": "resume", "epoch": 0, "step": 0, "batch": 0, "dropped_rows": 0}]
    for e, (loss, t1) in enumerate(zip(losses, top1, strict=True)):
        rows.append({"type": "step", "epoch": e, "step": 2 * e + 1, "loss": loss + 0.5, "lr": lr})
        row: dict[str, Any] = {"type": "epoch", "epoch": e, "step": 2 * e + 2, "lr": lr, "loss": loss, "ce": loss}
        if t1 is not None:
            row["val"] = {"body_top1": t1, "action_top1": t1, "action_top5": 100.0, "body_f1_macro": t1,
                          "body_f1_micro": t1, "action_f1_macro": t1 / 2, "action_f1_micro": t1,
                          "f1_mean": t1 / 2}
        rows.append(row)
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "config.json").write_text(json.dumps({"optim": {"epochs": 5}}))
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny training of 3 epochs (lr 3e-3, then 3e-4 from epoch 1)."""
    run = tmp_path_factory.mktemp("plots") / "run"
    train(with_overrides(PRESETS["tiny"], FAST), run, progress=False)
    return run


# ------------------------------------------------------------------------------------------ curves.png


def test_a_tiny_training_writes_curves_png_from_its_log(tiny_run: Path) -> None:
    png = tiny_run / CURVES
    assert png.is_file() and is_piumr_png(png)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 1000
    rows = epoch_rows(tiny_run)
    c = read_curves(tiny_run)
    assert c.epochs.tolist() == [0, 1, 2] and c.planned_epochs == 3 and c.steps == 6
    assert c.loss.tolist() == [r["loss"] for r in rows]
    assert c.lr.tolist() == pytest.approx([3e-3, 3e-4, 3e-4])
    assert c.val["f1_mean"].tolist() == [r["val"]["f1_mean"] for r in rows]
    assert set(c.parts) == {"ce", "girl"}  # CE + GIRL: both parts beside the total


def test_curves_skip_a_half_written_last_line_and_name_a_damaged_one(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "r", [2.0, 1.5], [10.0, 20.0])
    with open(run / "log.jsonl", "a") as fh:
        fh.write('{"type": "epoch", "epo')  # a run writing its next row
    assert read_curves(run).epochs.tolist() == [0, 1]
    lines = (run / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text("\n".join(["not json", *lines]) + "\n")
    with pytest.raises(ValueError, match=r"log\.jsonl:1: not a JSON line"):
        read_curves(run)


# ------------------------------------------------------------------------------------------ piumr plot


def test_plot_overlays_two_runs_and_tabulates_their_final_metrics(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr_cli import plot as plot_cli

    # the printed table whole: its console took its width when imported (COLUMNS=60 there folds the cells)
    monkeypatch.setattr(plot_cli._out, "width", 200)
    other = fake_run(tmp_path / "other", [3.0, 2.0, 1.25, 1.0], [10.0, None, 30.0, 40.0], lr=5e-7)
    out = tmp_path / "cmp"
    res = invoke("plot", tiny_run, other, "--out", out)
    assert res.exit_code == 0, res.output
    assert is_piumr_png(out / COMPARE)
    with open(out / FINAL_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == FINAL_COLUMNS and [r["run"] for r in rows] == ["run", "other"]
    last = epoch_rows(tiny_run)[-1]
    assert float(rows[0]["loss"]) == pytest.approx(last["loss"], rel=1e-5)
    assert float(rows[0]["val_f1_mean"]) == pytest.approx(last["val"]["f1_mean"], abs=1e-4)
    assert (rows[0]["epochs"], rows[0]["planned_epochs"], rows[0]["steps"]) == ("3", "3", "6")
    # the other run: 4 of 5 epochs, epoch 1 not validated, the best F1_mean at its last epoch, a tiny lr kept
    assert (rows[1]["epochs"], rows[1]["planned_epochs"], rows[1]["steps"], rows[1]["val_epoch"]) == ("4", "5", "8", "3")
    assert (float(rows[1]["loss"]), float(rows[1]["lr"]), float(rows[1]["val_action_top1"])) == (1.0, 5e-7, 40.0)
    assert (float(rows[1]["best_f1_mean"]), rows[1]["best_epoch"]) == (20.0, "3")
    md = (out / FINAL_MD).read_text().splitlines()
    assert md[0].startswith("| run | epochs |") and md[3].startswith("| other | 4/5 | 8 | 1.0000 |")
    assert "20.00 (epoch 3)" in md[3]
    assert "other" in res.output and "20.00 (epoch 3)" in res.output  # the printed table
    again = invoke("plot", tiny_run, other, "--out", out)  # its own files: replaced
    assert again.exit_code == 0, again.output


def test_plot_refuses_what_is_not_a_run_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(invoke("plot", tiny_run, empty, "--out", tmp_path / "o"), empty, "no log.jsonl")
    one_error_line(invoke("plot", tmp_path / "gone", "--out", tmp_path / "o"), tmp_path / "gone")
    one_error_line(invoke("plot", tiny_run / "log.jsonl", "--out", tmp_path / "o"), tiny_run / "log.jsonl")
    started = tmp_path / "started"
    started.mkdir()
    (started / "log.jsonl").write_text(json.dumps({"type": "step", "epoch": 0, "step": 1, "loss": 1.0}) + "\n")
    one_error_line(invoke("plot", started, "--out", tmp_path / "o"), started / "log.jsonl", "no epoch")
    one_error_line(invoke("plot", tiny_run, f"{tiny_run}/", "--out", tmp_path / "o"), tiny_run, "given twice")
    assert not (tmp_path / "o").exists()  # nothing written


def test_plot_never_replaces_a_file_it_did_not_write(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    out.mkdir()
    for name in (COMPARE, FINAL_CSV):
        (out / name).write_text("a user's file\n")
        one_error_line(invoke("plot", tiny_run, "--out", out), out, name)
        assert (out / name).read_text() == "a user's file\n"
        (out / name).unlink()
    assert sorted(p.name for p in out.iterdir()) == []


# ------------------------------------------------------------------------------------------ evaluate


def test_confusion_figure_is_row_normalised_over_the_classes_that_occur() -> None:
    conf = np.zeros((5, 5), dtype=np.int64)
    conf[0, 0], conf[0, 1], conf[1, 1], conf[3, 0], conf[3, 3], conf[3, 4] = 3, 1, 2, 5, 5, 2
    fig = confusion_figure(conf, ["a", "b", "c", "d", "e"], "t")
    ax = fig.axes[0]
    drawn = np.ma.filled(ax.images[0].get_array(), np.nan)  # classes 0, 1, 3, 4 (2: no clip, no prediction)
    want = np.array([[0.75, 0.25, 0, 0], [0, 1, 0, 0], [5 / 12, 0, 5 / 12, 2 / 12], [np.nan] * 4])
    np.testing.assert_allclose(drawn, want)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a [0] (n=4)", "b [1] (n=2)", "d [3] (n=12)",
                                                            "e [4] (n=0)"]
    assert "1 of 5 classes" in ax.get_title()


def test_evaluate_writes_the_confusion_figure_and_per_class_scores(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    res = invoke("evaluate", "--checkpoint", tiny_run / "best.safetensors", "--out", out, "--threads", "1")
    assert res.exit_code == 0, res.output
    assert is_piumr_png(out / CONFUSION) and "confusion.png" in res.output
    conf = np.array(json.loads((out / "metrics.json").read_text())["confusion"])
    with open(out / PER_CLASS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(conf) and rows[0]["name"] == "shaking body" and rows[0]["group"] == "body"
    for i, r in enumerate(rows):
        support, predicted, hit = conf[i].sum(), conf[:, i].sum(), conf[i, i]
        assert (int(r["support"]), int(r["predicted"])) == (support, predicted)
        assert ratio(r["recall"]) == ratio(hit, support) and ratio(r["precision"]) == ratio(hit, predicted)
        assert ratio(r["f1"]) == ratio(2 * hit, support + predicted)  # empty only for a class never seen
    assert invoke("evaluate", "--checkpoint", tiny_run / "best.safetensors", "--out", out).exit_code == 0


def test_evaluate_never_replaces_a_figure_or_table_it_did_not_write(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    for name in (CONFUSION, PER_CLASS):
        (out / name).write_text("a user's file\n")
        one_error_line(invoke("evaluate", "--checkpoint", tiny_run / "best.safetensors", "--out", out), out, name)
        assert (out / name).read_text() == "a user's file\n" and not (out / "metrics.json").exists()
        (out / name).unlink()


# ------------------------------------------------------------------------------------------ TensorBoard


def test_a_resumed_run_redraws_its_curves_and_its_tensorboard_scalars_read_back(tmp_path: Path) -> None:
    """A run killed after epoch 0 and resumed: curves.png over all 3 epochs, and TensorBoard events equal to the
    log's numbers, without what the killed run wrote after its checkpoint."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    cfg = with_overrides(PRESETS["tiny"], {**FAST, "tensorboard": True})
    run = tmp_path / "run"
    train(cfg, run, progress=False, log_every=1, stop_after_epoch=0)  # what a run killed after epoch 0 leaves
    assert read_curves(run).epochs.tolist() == [0]
    first = (run / CURVES).read_bytes()
    with SummaryWriter(str(run / "tensorboard")) as w:  # and an event it wrote after its checkpoint (step 2)
        w.add_scalar("epoch/loss", 99.0, 3)
    train(cfg, run, resume=True, progress=False, log_every=1)
    c = read_curves(run)
    assert c.epochs.tolist() == [0, 1, 2] and (run / CURVES).read_bytes() != first
    assert c.loss.tolist() == [r["loss"] for r in epoch_rows(run)]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()

    def scalars(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)]

    rows = epoch_rows(run)
    assert scalars("epoch/loss") == [(r["step"], pytest.approx(r["loss"])) for r in rows]  # no 99 at step 3
    assert scalars("val/f1_mean") == [(r["step"], pytest.approx(r["val"]["f1_mean"])) for r in rows]
    assert scalars("epoch/lr") == [(2, pytest.approx(3e-3)), (4, pytest.approx(3e-4)), (6, pytest.approx(3e-4))]
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert scalars("step/loss") == [(r["step"], pytest.approx(r["loss"])) for r in steps] and len(steps) == 6
    assert "val/worst_participant" in events.Tags()["scalars"]


def test_tensorboard_can_be_switched_on_when_a_run_is_resumed() -> None:
    assert config_overrides(TRAIN_OPTIONS, {"--tensorboard": True}) == {"tensorboard": True}
    assert RESUME_OPTIONS["--tensorboard"] == "tensorboard"
    cfg = PRESETS["tiny"]
    (change,) = amendments(cfg, cfg.model_copy(update={"tensorboard": True}), epochs_done=1)
    assert (change.key, change.old, change.new) == ("tensorboard", False, True)


def test_tensorboard_without_the_package_fails_fast_naming_the_extra(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not installed
    line = one_error_line(invoke("train", "--preset", "tiny", "--data", "synth", "--out", tmp_path / "cli",
                                 "--tensorboard", "--quiet"), "--tensorboard", 'pip install "piumr[tensorboard]"')
    assert "torch" not in line and not (tmp_path / "cli").exists()
    with pytest.raises(MissingExtraError, match=r"piumr\[tensorboard\]"):
        train(with_overrides(PRESETS["tiny"], {**FAST, "tensorboard": True}), tmp_path / "lib", progress=False)
    assert not (tmp_path / "lib" / "config.json").exists()  # refused before the folder holds a run
