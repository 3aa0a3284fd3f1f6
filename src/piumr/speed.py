"""The training path's speed levers (``TrainConfig.speed``), kept out of the recipe in ``train.py``.

Each lever changes how a step runs, never what it computes beyond rounding (``tests/test_speed.py`` trains
with and without each one from the same seed and compares):

- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` (CUDA only) -- :func:`configure_backends`;
- ``channels_last``: the model's 5-D weights and every clip in ``torch.channels_last_3d`` -- :func:`prepare_model`
  (a forward pre-hook puts any 5-D input into that layout) and :class:`Feed`;
- ``depthwise``: X3D's depthwise convs through ``conv3d`` (cuDNN), ATen's ``conv_depthwise3d`` or the Triton
  kernels with tiles per shape (``depthwise_tiles``) on CUDA; on the CPU every depthwise conv through
  ``piumr.kernels.cpu_depthwise`` (``numba`` or ``autograd``) -- :func:`prepare_model`;
- ``pointwise``: 1x1x1 convs as matmuls over the channels (``matmul``) -- :func:`prepare_model`;
- ``compile``: ``torch.compile`` of the network -- :func:`compile_model`;
- ``fused_adamw``: ``AdamW(fused=True)`` (torch's fused kernel, CPU and CUDA) -- :func:`piumr.recipe.build_optimizer`;
- ``uint8_clips``: the loader hands over uint8 ``(B, 3, T, H, W)`` clips (a quarter of float32's bytes), normalised
  on the device by :func:`piumr.data.transforms.normalize_clips` (the same float32 operations) -- :class:`Feed`;
- ``prefetch``: one loader for all remaining epochs (workers start once, ``prefetch_factor`` batches each) and, on
  CUDA, the next batch copied on a side stream while this one trains -- :class:`Feed`;
- ``check_every``: loss parts summed on the device, one host sync every N steps for the finite check and the
  logged values (1 = every step, the old behaviour) -- :class:`LossMeter`.

``"auto"`` values resolve per device (:func:`resolve_speed`): the CPU path (channels_last_3d, numba depthwise,
matmul pointwise; contiguous layout) on the CPU, the lever off elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from piumr.config import SpeedConfig, TrainConfig
from piumr.data.dataset import VideoDataset
from piumr.data.loaders import persistent_train_loader, train_loader
from piumr.data.transforms import normalize_clips
from piumr.backbones import backbone_spec
from piumr.kernels.cpu_depthwise import numba_available
from piumr.kernels.cpu_path import swap_cpu_convs, swap_swish
from piumr.kernels.depthwise import Tiles
from piumr.kernels.fastpath import DepthwiseImpl, swap_depthwise

__all__ = ["Feed", "LossMeter", "Synced", "compile_model", "configure_backends", "load_tiles",
           "prepare_model", "resolve_speed"]


def resolve_speed(speed: SpeedConfig, device: torch.device) -> SpeedConfig:
    """``speed`` with every ``"auto"`` replaced for ``device``: on the CPU depthwise ``numba`` (``autograd`` where
    numba cannot be imported), pointwise ``matmul`` and fused AdamW, elsewhere ``conv3d`` for both and AdamW's
    default; ``channels_last`` off on
    every device (on the CPU, PyTorch's channels-last batch norm computes its statistics less accurately: whole-model
    gradients 1.9e-3 from float64 against 2.5e-6 contiguous, docs/benchmarks.md "CPU training path").
    A CPU-only choice (numba, autograd, matmul) on a GPU runs the GPU's own conv (the modules fall back)."""
    cpu = device.type == "cpu"
    update: dict[str, Any] = {}
    if speed.channels_last == "auto":
        update["channels_last"] = False
    if speed.depthwise == "auto":
        update["depthwise"] = ("numba" if numba_available() else "autograd") if cpu else "conv3d"
    if speed.pointwise == "auto":
        update["pointwise"] = "matmul" if cpu else "conv3d"
    if speed.fused_adamw == "auto":
        update["fused_adamw"] = cpu
    return speed.model_copy(update=update) if update else speed


def configure_backends(speed: SpeedConfig, device: torch.device) -> None:
    """Process-wide switches: ``cudnn.benchmark`` on CUDA when asked (set, not only raised: a second run in the
    same process with the lever off gets it off again)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = speed.cudnn_benchmark


def load_tiles(path: str | None) -> Tiles | None:
    """Triton tiles per shape from a JSON object ``{"fwd/16x56x56/s1": [1, 16, 64], ...}`` (None: no file).
    ``ValueError`` naming the file for anything else."""
    if path is None:
        return None
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"speed.depthwise_tiles {path}: cannot read a JSON object of tiles ({e})") from None
    tiles: Tiles = {}
    for key, block in (raw.items() if isinstance(raw, dict) else [("", None)]):
        if not (isinstance(block, list) and len(block) == 3 and all(isinstance(v, int) and v > 0 and not v & (v - 1)
                                                                     for v in block)):
            raise ValueError(f"speed.depthwise_tiles {path}: {key!r} must map to three powers of two, got {block!r}")
        tiles[key] = (block[0], block[1], block[2])
    return tiles


def prepare_model(model: nn.Module, speed: SpeedConfig, device: torch.device | None = None) -> int:
    """Put ``speed.depthwise``'s and ``speed.pointwise``'s convs into ``model`` (in place, weights shared) and, with
    ``channels_last``, its 5-D weights into ``channels_last_3d`` and a forward pre-hook that puts a 5-D input
    there too. ``"auto"`` values resolve for ``device`` (default: the model's). Call after ``model.to(device)``.
    Returns the convs swapped."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    speed = resolve_speed(speed, device)
    if speed.depthwise in ("numba", "autograd"):
        dw, pw = swap_cpu_convs(model, depthwise=speed.depthwise,
                                pointwise="matmul" if speed.pointwise == "matmul" else "conv3d")
        swapped = dw + pw + swap_swish(model)  # the same function in native kernels (not counted as a lever)
    else:
        depthwise: DepthwiseImpl = "aten" if speed.depthwise == "aten" else "triton" if speed.depthwise == "triton" \
            else "conv3d"
        swapped = swap_depthwise(model, depthwise, load_tiles(speed.depthwise_tiles))
        if speed.pointwise == "matmul":
            swapped += swap_cpu_convs(model, depthwise=None, pointwise="matmul")[1]
    if speed.channels_last is True:  # nn.Module.to(memory_format=...) refuses models with tensors of other ranks
        for p in model.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        model.register_forward_pre_hook(_channels_last_input)
    return swapped


def _channels_last_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: a 5-D tensor argument in ``channels_last_3d`` (a no-op when it already is)."""
    return tuple(a.contiguous(memory_format=torch.channels_last_3d) if isinstance(a, torch.Tensor) and a.dim() == 5
                 else a for a in args)


def compile_model(net: nn.Module, speed: SpeedConfig) -> nn.Module:
    """``torch.compile(net)`` with ``speed.compile`` (the first steps then compile: ~100 s for X3D-M on a GPU,
    DESIGN §5); ``net`` itself otherwise. Parameters and ``state_dict`` stay those of ``net``."""
    if not speed.compile:
        return net
    compiled: nn.Module = torch.compile(net)  # type: ignore[assignment]
    return compiled


class Feed:
    """The training batches of each epoch, on the device: ``video`` float32 (B, 3, T, H, W) normalised (in
    ``channels_last_3d`` with that lever), ``action`` int64 (B,), the rest as the loader gives it.

    Without ``speed.prefetch`` each epoch gets a fresh :func:`piumr.data.loaders.train_loader` (the old path).
    With it one :func:`piumr.data.loaders.persistent_train_loader` serves every remaining epoch, and on CUDA the
    next batch is copied (and normalised) on a side stream while the current one trains. Both give the same
    batches in the same order; ``steps`` is the number of batches an epoch trains.
    """

    def __init__(self, cfg: TrainConfig, ds: VideoDataset, device: torch.device, steps: int, *, rank: int = 0,
                 world: int = 1) -> None:
        self.cfg, self.ds, self.device, self.steps, self.rank, self.world = cfg, ds, device, steps, rank, world
        self.speed = resolve_speed(cfg.speed, device)
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.speed.prefetch and self.cuda else None  # type: ignore[no-untyped-call]
        self._batches: Iterator[dict[str, Any]] | None = None
        self._next: tuple[int, int] | None = None  # (epoch, batch) the persistent iterator yields next

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Batches ``skip, skip + 1, ...`` of ``epoch`` (at most ``steps`` in all, ``skip`` included)."""
        if not self.speed.prefetch:
            self.ds.set_epoch(epoch)
            loader = train_loader(self.cfg, self.ds, epoch=epoch, rank=self.rank, world=self.world,
                                  pin_memory=self.cuda, skip_batches=skip)
            for _, batch in zip(range(skip, self.steps), loader):
                yield self.to_device(batch)
            return
        if self._batches is None or self._next != (epoch, skip):
            loader = persistent_train_loader(self.cfg, self.ds, first_epoch=epoch, skip_batches=skip,
                                             steps=self.steps, rank=self.rank, world=self.world,
                                             pin_memory=self.cuda, prefetch_factor=self.speed.prefetch_factor)
            self._batches = self._side_stream(iter(loader))
        self._next = None  # set again only when this epoch is drawn to its end
        for b in range(skip, self.steps):
            batch = next(self._batches)
            yield batch
        self._next = (epoch + 1, 0)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with ``video`` and ``action`` on the device, the video normalised (uint8 clips) and in the
        model's memory format."""
        video = batch["video"].to(self.device, non_blocking=True)
        if video.dtype == torch.uint8:
            spec = backbone_spec(self.cfg.model.backbone)  # the recipe's normalisation (piumr.recipe.input_stats)
            video = normalize_clips(video, spec.mean, spec.std)
        if self.speed.channels_last is True:
            video = video.contiguous(memory_format=torch.channels_last_3d)
        return {**batch, "video": video, "action": batch["action"].to(self.device, non_blocking=True)}

    def _side_stream(self, batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``to_device`` of each batch, one batch ahead on a side stream (CUDA); in order, in place off CUDA."""
        if self.stream is None:
            for batch in batches:
                yield self.to_device(batch)
            return
        main = torch.cuda.current_stream(self.device)
        ahead = self._issue(next(batches, None))
        while ahead is not None:
            main.wait_stream(self.stream)
            for t in (ahead["video"], ahead["action"]):
                t.record_stream(main)  # the side stream's allocation is used on the main stream
            current, ahead = ahead, self._issue(next(batches, None))
            yield current

    def _issue(self, batch: dict[str, Any] | None) -> dict[str, Any] | None:
        if batch is None or self.stream is None:
            return batch
        with torch.cuda.stream(self.stream):
            return self.to_device(batch)


@dataclass(frozen=True)
class Synced:
    """What one host sync of a :class:`LossMeter` read: ``steps`` added since the last sync, the ``sums`` of
    each loss part over them, the ``last`` step's parts, and the first step whose total was not finite
    (``bad_step``, None when all were) with that total (``bad_value``)."""

    steps: int
    sums: dict[str, float]
    last: dict[str, float]
    bad_step: int | None
    bad_value: float


class LossMeter:
    """Loss parts summed on their device; the host reads them (one sync) every ``every`` steps or when forced.

    ``add(parts, step)`` takes the step's scalar parts (``total`` is the one checked for finiteness) and returns
    a :class:`Synced` when it synced, else None; ``flush()`` syncs what is pending (None when nothing is).
    Sums are float64, each part added in step order: with ``every=1`` they equal adding the parts' floats
    on the host one by one.
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"check_every must be >= 1, got {every}")
        self.every = every
        self._keys: list[str] = []
        self._sum: torch.Tensor | None = None
        self._last: torch.Tensor | None = None
        self._bad: torch.Tensor | None = None  # (first bad step or -1, its total)
        self._n = 0

    def add(self, parts: Mapping[str, torch.Tensor], step: int, force: bool = False) -> Synced | None:
        """Add one step's parts (scalars); sync when ``every`` steps are pending or ``force``."""
        keys = list(parts)
        if self._n and keys != self._keys:
            raise ValueError(f"loss parts changed from {self._keys} to {keys}")
        self._keys = keys
        vec = torch.stack([torch.as_tensor(v).detach().reshape(()).to(torch.float64) for v in parts.values()])
        if self._sum is None or self._bad is None:
            self._sum = torch.zeros_like(vec)
            self._bad = torch.tensor([-1.0, 0.0], dtype=torch.float64, device=vec.device)
        self._sum += vec
        self._last = vec
        self._n += 1
        total = vec[keys.index("total")] if "total" in keys else vec.sum()
        first = (self._bad[0] < 0) & ~torch.isfinite(total)
        self._bad = torch.where(first, torch.stack([vec.new_full((), float(step)), total]), self._bad)
        return self.flush() if force or self._n >= self.every else None

    def flush(self) -> Synced | None:
        """Read the pending sums to the host (the one sync) and start over."""
        if not self._n or self._sum is None or self._last is None or self._bad is None:
            return None
        host = torch.cat([self._sum, self._last, self._bad]).tolist()
        k = len(self._keys)
        out = Synced(self._n, dict(zip(self._keys, host[:k])), dict(zip(self._keys, host[k:2 * k])),
                     None if host[2 * k] < 0 else int(host[2 * k]), host[2 * k + 1])
        self._sum = self._last = self._bad = None
        self._n = 0
        return out
