"""Clip augmentation with ``torchvision.transforms.v2`` (video aware).

Input: uint8 ``(T, H, W, 3)`` frames from :mod:`piumr.data.video` or the prepared
cache. Output: float32 ``(3, T, crop, crop)`` normalised with the statistics the
backbone's pretrained weights were trained with (``piumr.recipe.input_stats``;
pytorchvideo X3D's Kinetics values by default). Frames are wrapped
as a :class:`torchvision.tv_tensors.Video` ``(T, 3, H, W)``, so one random crop and
one flip decision apply to every frame of a clip.

pytorchvideo.transforms is not used: it imports a torchvision module that no
longer exists (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision import tv_tensors  # type: ignore[import-untyped]
from torchvision.transforms import v2  # type: ignore[import-untyped]

from piumr.config import DataConfig

KINETICS_MEAN = (0.45, 0.45, 0.45)  # pytorchvideo X3D (Kinetics-400) statistics: the default
KINETICS_STD = (0.225, 0.225, 0.225)
Triple = tuple[float, float, float]
# Area range of RandomResizedCrop: our choice (torchvision's default lower bound 0.08 is
# too aggressive for micro-actions in a fixed seated framing); not from the paper.
TRAIN_CROP_SCALE = (DataConfig().crop_min_scale, 1.0)  # the default lives in DataConfig
TRAIN_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


class ClipTransform:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, crop, crop)`` (``normalize=False``: uint8, left to
    :func:`normalize_clips` on the device); see :func:`build_transform`."""

    def __init__(self, spatial: v2.Transform, short_side: int, normalize: bool = True, mean: Triple = KINETICS_MEAN,
                 std: Triple = KINETICS_STD) -> None:
        self.short_side = short_side
        self.spatial = spatial
        self.normalize = normalize
        # (x / 255 - mean) / std == (x - 255 mean) * (1 / (255 std)), per channel, shape (3, 1, 1, 1)
        self.shift = torch.tensor(mean).mul(255.0).view(3, 1, 1, 1)
        self.scale = torch.tensor(std).mul(255.0).reciprocal().view(3, 1, 1, 1)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {tuple(frames.shape)}")
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # (T, 3, H, W) uint8
        if min(video.shape[-2:]) != self.short_side:  # cache/decoder may have resized already
            video = v2.functional.resize(video, [self.short_side], antialias=True)
        cropped: torch.Tensor = self.spatial(video).as_subclass(torch.Tensor)  # (T, 3, crop, crop) uint8
        if not self.normalize:
            return cropped.permute(1, 0, 2, 3).contiguous()  # (3, T, crop, crop) uint8
        return self._normalize(cropped)

    def _normalize(self, cropped: torch.Tensor) -> torch.Tensor:
        """uint8 (T, 3, h, w) -> float32 (3, T, h, w), Kinetics-normalised.

        Written out by hand: v2.ToDtype + v2.Normalize on a Video took ~60 ms per
        16x224x224 clip on 2 CPU cores, this fused in-place version ~5 ms.
        """
        t, c, h, w = cropped.shape
        out = torch.empty((c, t, h, w), dtype=torch.float32)
        out.copy_(cropped.permute(1, 0, 2, 3))
        return out.sub_(self.shift).mul_(self.scale)

    def __repr__(self) -> str:
        return f"ClipTransform(short_side={self.short_side}, spatial={self.spatial}, normalize={self.normalize})"


def normalize_clips(video: torch.Tensor, mean: Triple = KINETICS_MEAN, std: Triple = KINETICS_STD) -> torch.Tensor:
    """uint8 ``(..., 3, T, H, W)`` -> float32, normalised by ``mean`` / ``std`` on ``video``'s device: the same
    float32 operations as :class:`ClipTransform` in the loader, so the result is bit-identical to it."""
    shift = torch.tensor(mean, device=video.device).mul(255.0).view(3, 1, 1, 1)
    scale = torch.tensor(std, device=video.device).mul(255.0).reciprocal().view(3, 1, 1, 1)
    out = torch.empty(video.shape, dtype=torch.float32, device=video.device)
    out.copy_(video)
    return out.sub_(shift).mul_(scale)


def build_transform(
    train: bool, crop: int, short_side: int, hflip: bool = DataConfig().hflip, min_scale: float = TRAIN_CROP_SCALE[0],
    normalize: bool = True, mean: Triple = KINETICS_MEAN, std: Triple = KINETICS_STD,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Clip transform: uint8 ``(T, H, W, 3)`` -> normalised float32 ``(3, T, crop, crop)``.

    Train: short-side resize to ``short_side``, RandomResizedCrop(``crop``, scale
    (``min_scale``, 1), default :data:`TRAIN_CROP_SCALE`), optional horizontal flip. Eval: short-side resize, centre
    crop. Randomness comes from torch's global generator (the dataset seeds it per item). ``normalize=False``:
    uint8 ``(3, T, crop, crop)`` instead, for :func:`normalize_clips` on the device.
    """
    if crop > short_side:
        raise ValueError(f"crop {crop} is larger than short_side {short_side}")
    steps: list[v2.Transform]
    if train:
        steps = [v2.RandomResizedCrop(crop, scale=(min_scale, 1.0), ratio=TRAIN_CROP_RATIO, antialias=True)]
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        steps = [v2.CenterCrop(crop)]
    return ClipTransform(v2.Compose(steps), short_side, normalize, mean, std)
