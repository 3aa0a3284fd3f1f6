"""One training + evaluation of the person-shift suite, in memory (no run folder, no loader).

Arms (``piumr.shift.arms.ARM_SPECS``) differ by config fields (TFAM, GIRL, the loss, MixStyle), by a training
augmentation (the positive control, the augmentation baseline), by their random stream (the A/A arm) or by
person-structured batches (the person-group losses). Common random numbers: an arm's seed fixes the weight
initialisation (the backbone and head are built first, so they start identical in every arm), the data order
(``order`` generator) and, with stream 0, the dropout masks and the shared augmentation's draws (reseeded after the
model is built, so a module that draws at construction does not move them). The A/A arm shares the initialisation
and the data order and differs only in that stream. An arm's own augmentation draws from a third generator, so
its data order stays the baseline's.

The result is per clip: the training persons' held-back clips' (``seen``) and each factor's held-out
persons' (``unseen/<factor>``) action and body correctness, with the person of each clip.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from piumr.checkpoint import save_checkpoint
from piumr.config import PRESETS, SHIFT_ARMS, SHIFT_SUITE, ModelConfig, TrainConfig, with_overrides
from piumr.data.loaders import person_order
from piumr.data.ma52 import ACTION_TO_BODY
from piumr.data.synth.shift import ClipSet, ShiftSizes
from piumr.model.piumr import PIUmrNet
from piumr.shift.arms import arm_spec
from piumr.shift.aug import control_aug, shared_aug
from piumr.recipe import build_criterion, build_optimizer, normalize, set_lr, train_step
from piumr.runtime import seed_everything
from piumr.speed import prepare_model
from piumr.stall import EMA_WEIGHT, OnStall, StallGuard, stall_after

__all__ = ["ARMS", "STREAM_OFFSET", "CONTROL_OFFSET", "AUG_OFFSET", "stream_seed", "suite_config", "arm_config", "train_and_score", "tfam_map"]

ARMS = SHIFT_ARMS
STREAM_OFFSET = 100_003  # an arm's random stream s draws from seed + (s + 1) * STREAM_OFFSET (dropout, shared augmentation)
AUG_OFFSET = 50_021  # the shared augmentation's draws: stream seed + AUG_OFFSET (never another seed's stream)
CONTROL_OFFSET = 7_919  # an arm's own augmentation stream (the positive control, the augmentation baseline)
_BODY = np.asarray(ACTION_TO_BODY)


def suite_config(sizes: ShiftSizes, *, epochs: int, batch: int = int(SHIFT_SUITE["batch"]),
                 lr: float = float(SHIFT_SUITE["lr"]), tfam_stage: int = int(SHIFT_SUITE["tfam_stage"])) -> TrainConfig:
    """The suite's config (``config.SHIFT_SUITE``): the ``smoke`` model (X3D tiny) on T x S x S clips, TFAM after
    ``tfam_stage``."""
    return with_overrides(PRESETS["smoke"], {
        "name": "shift-suite", "model.frames": sizes.frames, "model.crop": sizes.size,
        "data.short_side": sizes.size, "model.tfam.stage": tfam_stage,
        "model.tfam.dct_kernel": int(SHIFT_SUITE["dct_kernel"]), "optim.epochs": epochs, "optim.batch_size": batch,
        "optim.lr": lr, "optim.milestones": (max(1, round(epochs * 0.75)),), "girl.groups": int(SHIFT_SUITE["girl_groups"]),
    })


def arm_config(base: TrainConfig, arm: str, seed: int) -> TrainConfig:
    """``base`` for ``arm`` and ``seed``: the arm's config overrides (``piumr.shift.arms``; what an arm does to a
    batch, its augmentation, stream and person batches, is not a config field)."""
    spec = arm_spec(arm)
    return with_overrides(base, {**spec.overrides, "seed": seed})


def tfam_map(cfg: TrainConfig) -> tuple[int, int]:
    """(H, W) of the feature map TFAM sees under ``cfg`` (measured with a forward pass)."""
    net = PIUmrNet(with_overrides(cfg, {"model.tfam.enabled": False}).model)
    blocks: Any = getattr(net.backbone, "blocks")
    x = torch.zeros(1, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
    with torch.no_grad():
        for i in range(cfg.model.tfam.stage + 1):
            x = blocks[i](x)
    return int(x.shape[-2]), int(x.shape[-1])


def _batch(clips: ClipSet, idx: np.ndarray, model: ModelConfig) -> torch.Tensor:
    """uint8 (N, T, S, S, 3) rows ``idx`` -> float (B, 3, T, S, S), normalised by the recipe (the backbone's
    statistics)."""
    v = torch.from_numpy(clips.video[idx]).float().div_(255.0)
    return normalize(v.permute(0, 4, 1, 2, 3), model).contiguous()


@torch.no_grad()
def _score(net: PIUmrNet, clips: ClipSet, batch: int, device: torch.device) -> dict[str, list[int]]:
    net.eval()
    pred: list[int] = []
    for s in range(0, len(clips), batch):
        idx = np.arange(s, min(s + batch, len(clips)))
        pred += net(_batch(clips, idx, net.cfg).to(device)).logits.argmax(dim=1).tolist()
    p = np.asarray(pred)
    return {"action": (p == clips.labels).astype(int).tolist(),
            "body": (_BODY[p] == _BODY[clips.labels]).astype(int).tolist(),
            "person": clips.persons.tolist()}


def stream_seed(seed: int, stream: int) -> int:
    """The seed of an arm's random stream (dropout masks; ``+ AUG_OFFSET``: the shared augmentation's draws).

    Every stream, the baseline's stream 0 included, is offset from ``seed``: the seed that draws the initial
    weights and the data order is never reused for dropout (suite version 3; in version 2 stream 0 reused it, so
    the baseline's masks were the initialisation's random numbers and the A/A's were not)."""
    return seed + (stream + 1) * STREAM_OFFSET


def train_and_score(cfg: TrainConfig, data: dict[str, ClipSet], *, augment: str | None = None, stream: int = 0,
                    person_batches: int = 0, device: str = "cpu", save_to: Path | None = None,
                    on_stall: OnStall = "warn", name: str = "shift-suite run") -> dict[str, Any]:
    """Train on ``data["train"]`` and score every other set of ``data`` (``seen``, ``unseen/<factor>`` ...).

    ``augment``: a name of ``piumr.shift.aug.AUGMENTATIONS`` (a factor's positive control, ``recipe``) applied to
    every training batch; ``stream``: the arm-level random stream (dropout, shared augmentation; 0 = the
    baseline's); ``person_batches``: persons per batch (each batch holds that many persons, equal shares; 0 =
    shuffled clips), and the batch's person ids go to the criterion when it uses them. ``device``:
    where the model trains ("cpu", "cuda", "cuda:N"); batches are built and augmented on the CPU from the run's
    generators either way, so the data order and augmentation draws do not depend on the device. ``save_to``: a
    path for the trained model (a piumr checkpoint with its config), so that it can be scored again on other
    held-out persons without retraining. ``on_stall``: the stall guard's action (``piumr.stall``; the moving
    average of the cross-entropy is kept on the device and read once, at the guard's step); ``name``: the run in
    its warning.
    Returns ``{<set>: {"action", "body", "person"}, ..., "train_s", "eval_s", "train_cpu_s", "eval_cpu_s", "final_loss",
    "stalled"}``
    (per-clip 0/1 lists; wall and CPU seconds: on a shared machine CPU seconds estimate an idle core's wall time)."""
    seed_everything(cfg.seed)
    dev = torch.device(device)
    net = PIUmrNet(cfg.model).to(dev)
    prepare_model(net, cfg.speed, dev)  # the device's speed levers (CPU: numba depthwise, matmul pointwise)
    criterion = build_criterion(cfg).to(dev)
    opt = build_optimizer(net, cfg.optim, cfg.speed, dev)
    arm_seed = stream_seed(cfg.seed, stream)
    torch.manual_seed(arm_seed)  # the arm's stream: dropout masks (and any other draw of the global generator)
    order_g = torch.Generator().manual_seed(cfg.seed)  # the data order: every arm of a seed, the A/A arm included
    g = torch.Generator().manual_seed(arm_seed + AUG_OFFSET)  # the shared augmentation's draws
    # an arm's own augmentation draws from a third stream, so that its data order and shared augmentation stay
    # those of the baseline with the same seed (common random numbers in every epoch, not only the first)
    g_control = torch.Generator().manual_seed(cfg.seed + CONTROL_OFFSET)
    train, B = data["train"], cfg.optim.batch_size
    if person_batches:  # as many persons per batch as asked, the training set has and divide the batch
        person_batches = max(p for p in range(1, min(person_batches, len(np.unique(train.persons))) + 1) if B % p == 0)
    with_persons = bool(getattr(criterion, "needs_persons", False))
    t0, c0 = time.perf_counter(), time.process_time()
    last = torch.tensor(float("nan"))
    step = 0
    steps_per_epoch = len(train) // B if not person_batches else len(person_order(train.persons.tolist(), B,
                                                                                 person_batches, torch.Generator())) // B
    guard = StallGuard(max(2, len(np.unique(train.labels))),
                       stall_after(steps_per_epoch * cfg.optim.epochs, cfg.optim.warmup_steps), name,
                       lambda line: print(f"warning: {line}", file=sys.stderr, flush=True), on_stall)
    ema: torch.Tensor | None = None
    for epoch in range(cfg.optim.epochs):
        set_lr(opt, cfg.optim, epoch)
        net.train()
        order = (np.array(person_order(train.persons.tolist(), B, person_batches, order_g), dtype=np.int64) if person_batches
                 else torch.randperm(len(train), generator=order_g).numpy())
        for s in range(0, len(order) - B + 1, B):
            if step < cfg.optim.warmup_steps:  # the step warm-up: this step's lr
                set_lr(opt, cfg.optim, epoch, step)
            step += 1
            idx = np.sort(order[s:s + B])
            x = shared_aug(_batch(train, idx, cfg.model), g)
            if augment is not None:
                x = control_aug(augment, x, g_control)
            persons = torch.from_numpy(train.persons[idx]).long().to(dev) if with_persons else None
            _, parts = train_step(net, criterion, opt, x.to(dev, non_blocking=True),
                                  torch.from_numpy(train.labels[idx]).to(dev), persons)
            last = parts.total.detach()  # read once after training: no device sync per step
            ce = parts.logs["ce"].detach()
            ema = ce if ema is None else (1 - EMA_WEIGHT) * ema + EMA_WEIGHT * ce
            if guard.after is not None and step == guard.after:
                guard.check(step, float(ema))
    loss = float(last)
    if save_to is not None:  # what it was trained on, as ``data.splits.trained_on`` records it for a training run
        seen = {"kind": "synthetic", "root": "synth", "split": "shift-suite", "fold": None, "task": 2,
                "classes": sorted({int(c) for c in train.labels}), "head": cfg.model.num_classes}
        save_checkpoint(save_to, net, cfg, epoch=cfg.optim.epochs, step=step, device=device,
                        extra={"shift_suite": True, "augment": augment, "stream": stream}, trained_on=seen)
    t1, c1 = time.perf_counter(), time.process_time()
    res = {k: _score(net, v, 64, dev) for k, v in data.items() if k != "train"}
    return {**res, "train_s": round(t1 - t0, 2), "eval_s": round(time.perf_counter() - t1, 2),
            "train_cpu_s": round(c1 - c0, 2), "eval_cpu_s": round(time.process_time() - c1, 2), "final_loss": loss,
            "stalled": guard.stalled}
