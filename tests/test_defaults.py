"""One source for every hyperparameter default: signatures that repeat a config default must equal it.

TFAM and GIRL keep their defaults in ``TFAMConfig`` / ``GIRLConfig`` and are checked with their modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from piumr.config import DataConfig, ModelConfig, TrainConfig
from piumr.data.dataset import VideoDataset
from piumr.data.ma52 import cross_subject_folds
from piumr.data.prepare import prepare_dataset
from piumr.data.synth import generate
from piumr.data.transforms import TRAIN_CROP_SCALE, build_transform
from piumr.model.backbone import build_x3d
from piumr_cli import main as cli

DATA, MODEL, TRAIN = DataConfig(), ModelConfig(), TrainConfig()

CASES: list[tuple[Callable[..., Any], str, object]] = [
    (build_transform, "hflip", DATA.hflip),
    (build_transform, "min_scale", DATA.crop_min_scale),
    (cross_subject_folds, "k", DATA.folds),
    (cross_subject_folds, "seed", DATA.fold_seed),
    (generate, "persons", DATA.synth_persons),
    (generate, "clips_per_person", DATA.synth_clips_per_person),
    (generate, "classes_per_body", DATA.synth_classes_per_body),
    (generate, "frames", DATA.synth_frames),
    (generate, "size", DATA.synth_size),
    (generate, "seed", DATA.synth_seed),
    (build_x3d, "dropout", MODEL.dropout),
    (VideoDataset.__init__, "backend", DATA.backend),
    (VideoDataset.__init__, "on_error", DATA.on_error),
    (VideoDataset.__init__, "seed", TRAIN.seed),
    (prepare_dataset, "short_side", DATA.short_side),
    (cli.prepare, "short_side", DATA.short_side),
]


@pytest.mark.parametrize("fn, param, expected", CASES, ids=[f"{f.__qualname__}.{p}" for f, p, _ in CASES])
def test_signature_default_is_the_config_default(fn: Callable[..., Any], param: str, expected: object) -> None:
    default = inspect.signature(fn).parameters[param].default
    assert default == expected, f"{fn.__qualname__}({param}={default!r}) drifted from the config ({expected!r})"


def test_train_crop_scale_is_the_config_default() -> None:
    assert TRAIN_CROP_SCALE[0] == DATA.crop_min_scale
