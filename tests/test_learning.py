"""The method trains: seeded CPU runs on the synthetic data learn above chance (slow: ~1-3 min each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from piumr.config import PRESETS, with_overrides
from piumr.train import train

CHANCE = 100.0 / 7  # the smoke data has 7 classes, balanced


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2 min on 2 idle cores; a loaded machine took over 10
def test_paper_girl_settings_learn_above_chance(tmp_path: Path) -> None:
    """The smoke model with TFAM and the `paper` preset's GIRL settings (tau, eta, unit, gradient through the
    weights, detached R_var) learns well above chance on unseen persons in 266 seeded steps.

    The one change is G: the paper's G = 4 at batch 80 makes groups of 20; at batch 12 we keep groups of 6
    (G = 2). With G = 4 (groups of 3, most anchors without a positive) the same run reached only 25 % on
    the official-like split in 252 steps (docs/method_fidelity.md)."""
    paper_girl = {**PRESETS["paper"].girl.model_dump(), "groups": 2}
    cfg = with_overrides(PRESETS["smoke"], {"girl": paper_girl, "seed": 0, "data.split": "cross-subject"})
    paper = PRESETS["paper"].girl
    assert cfg.girl.model_copy(update={"groups": paper.groups}) == paper and cfg.model.tfam.enabled
    res = train(cfg, tmp_path / "run", progress=False)
    assert res.final["action_top1"] > 2 * CHANCE, res.final
