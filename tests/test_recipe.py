"""The recipe seam (``piumr.recipe``): every trainer takes its criterion, optimiser, normalisation and step from it.
A new loss touches its own module and the registry only: a toy loss registered here trains through ``piumr train``
and the person-shift suite's trainer without another change."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from piumr.config import PRESETS, with_overrides
from piumr.losses import LOSSES, Criterion, LossParts, build_criterion
from piumr.recipe import input_stats, normalize, recipe_of

ROOT = Path(__file__).resolve().parents[1]


class ToyLoss(Criterion):
    """Cross-entropy with label smoothing 0.1: what a user's new loss looks like."""

    calls = 0

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        ToyLoss.calls += 1
        ce = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        return LossParts(ce, {"loss": ce, "ce": ce})


def test_a_toy_loss_trains_through_every_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(LOSSES, "toy", lambda cfg: ToyLoss())
    from piumr.train import train

    cfg = with_overrides(PRESETS["tiny"], {"loss": "toy", "optim.epochs": 1, "max_steps_per_epoch": 2,
                                           "data.num_workers": 0})
    ToyLoss.calls = 0
    res = train(cfg, tmp_path / "run", progress=False)
    assert ToyLoss.calls == 2 and res.steps == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r["type"] == "epoch" for r in rows)

    from piumr.data.synth.shift import ShiftSizes, build_train
    from piumr.shift.train import arm_config, suite_config, train_and_score

    toy = ShiftSizes(train_persons=3, test_persons_per_fold=2, folds=2, clips_per_person=21, frames=4, size=32)
    suite = with_overrides(arm_config(suite_config(toy, epochs=1, batch=8), "baseline", 0), {"loss": "toy"})
    ToyLoss.calls = 0
    train_and_score(suite, build_train(toy))
    assert ToyLoss.calls == len(build_train(toy)["train"]) // 8


def test_unknown_loss_is_named() -> None:
    with pytest.raises(ValueError, match="loss .nope. is not registered; choose one of: .*piumr"):
        build_criterion(with_overrides(PRESETS["tiny"], {"loss": "nope"}))


def test_normalisation_comes_from_the_backbone_spec() -> None:
    x3d = PRESETS["tiny"].model
    assert input_stats(x3d) == ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
    r21d = x3d.model_copy(update={"backbone": "r2plus1d_tiny"})
    assert input_stats(r21d)[0] == (0.43216, 0.394666, 0.37645)
    white = torch.ones(1, 3, 2, 2, 2)
    assert normalize(white.clone(), x3d)[0, 0, 0, 0, 0].item() == pytest.approx((1 - 0.45) / 0.225)
    assert recipe_of(PRESETS["tiny"])["mean"] == [0.45, 0.45, 0.45]


def test_one_optimizer_constructor() -> None:
    """``grep -rn "optim.AdamW(" src cli`` finds one place: the recipe seam."""
    out = subprocess.run(["grep", "-rn", "--include=*.py", "optim.AdamW(", "src", "cli"], cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    assert [re.sub(r":\d+:.*", "", line) for line in out] == ["src/piumr/recipe.py"], out


def test_a_suite_folder_of_another_recipe_is_refused(tmp_path: Path) -> None:
    """A person-shift suite folder whose runs were made under another recipe version takes no new runs."""
    from piumr.shift.suite import SuiteSettings, _check_settings

    s = SuiteSettings(seeds=(0,))
    _check_settings(s, tmp_path)
    old = json.loads((tmp_path / "suite.json").read_text())
    (tmp_path / "suite.json").write_text(json.dumps({**old, "recipe_version": old["recipe_version"] - 1}))
    with pytest.raises(ValueError, match="holds runs made with other settings"):
        _check_settings(s, tmp_path)
