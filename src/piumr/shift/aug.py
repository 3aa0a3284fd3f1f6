"""Training-batch augmentations of the person-shift suite: the shared ones every arm gets (flip, shift)
and the positive controls, one per factor, each known to remove that factor:

- ``tempo``: random time-warp (speed 0.5-2x) that never cuts the clip's movement;
- ``size``: random scale (0.55-1.25x) of the frame;
- ``appearance``: colour jitter (random channel mixing, brightness) + random grating texture + noise;
- ``style``: random monotone time-warp (ease), +-1 frame jitter (tremor), motion-magnitude jitter
  (amplitude: frames pushed away from or towards the clip's temporal mean by 0.5-1.8x);
- ``mixed``: all four.

and the augmentation baseline (``augmentation_recipe``: warp + scale + colour), all by name in ``AUGMENTATIONS``.

Every function takes a float batch (B, 3, T, H, W) and a ``torch.Generator`` and returns a new batch of
the same shape; the generator is the only source of randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENTATIONS", "CONTROLS_VERSION", "CONTROLS", "augmentation_recipe", "shared_aug", "control_aug",
           "motion_span", "time_warp"]


#: changes whenever a control's augmentation changes (suite.json records it: runs of another version are refused)
#: 2: the tempo warp never cuts the movement; the controls draw from their own generator. 3: the data control's
#: training persons lie in the held-out region jointly (every second one drawn from all held-out ranges at once)
CONTROLS_VERSION = 3


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _log_u(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return torch.exp(_u(g, n, math.log(lo), math.log(hi)))


def shared_aug(x: Tensor, g: torch.Generator) -> Tensor:
    """Horizontal flip (p = 0.5) and a random translation of up to 1/12 of the frame (edge padding)."""
    B, _, _, H, W = x.shape
    flip = torch.rand(B, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    pad = max(1, H // 12)
    C, T = x.shape[1], x.shape[2]
    xp = F.pad(x.reshape(B, C * T, H, W), (pad, pad, pad, pad), mode="replicate").reshape(B, C, T, H + 2 * pad, W + 2 * pad)
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=g)
    return torch.stack([xp[i, :, :, int(dy[i]):int(dy[i]) + H, int(dx[i]):int(dx[i]) + W] for i in range(B)])


def _gather_time(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, C, T, H, W), idx (B, T) float frame positions -> nearest frames (clamped)."""
    T = x.shape[2]
    i = idx.round().long().clamp(0, T - 1)
    return torch.stack([x[b, :, i[b]] for b in range(x.shape[0])])


def motion_span(x: Tensor, frac: float = 0.2) -> tuple[Tensor, Tensor]:
    """Where each clip moves: x (B, C, T, H, W) -> (first, last) frame indices (B,) int64 of the frames
    touched by a frame difference of at least ``frac`` of the clip's largest one (the whole clip when
    nothing moves)."""
    T = x.shape[2]
    e = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 3, 4))  # (B, T-1): difference t -> t+1
    on = e >= frac * e.amax(dim=1, keepdim=True).clamp_min(1e-12)
    t = torch.arange(T - 1)
    first = torch.where(on, t, T).amin(dim=1).clamp_max(T - 1)
    last = torch.where(on, t + 1, -1).amax(dim=1).clamp_min(0)
    still = ~on.any(dim=1)
    return torch.where(still, 0, first), torch.where(still, T - 1, last)


def time_warp(x: Tensor, g: torch.Generator) -> Tensor:
    """Play each clip at a random speed in [0.5, 2] (log-uniform) without cutting its movement.

    Faster (rate > 1): the clip is played faster and padded with its first and last frames at a random
    offset, so all of it stays in view. Slower (rate < 1): a window of ``rate * (T - 1)`` frames is
    stretched over the clip; the window always holds the frames that move (``motion_span``), and the
    rate is raised where the movement is longer than the window. A window that cut the movement would
    change the label of task v2, whose classes differ by repetition and by whether the return comes
    (a "once" cut before its return is a "stay", a "twice" cut after one bump is a "once")."""
    B, _, T = x.shape[:3]
    rate = _log_u(g, B, 0.5, 2.0)
    first, last = motion_span(x)
    rate = torch.maximum(rate, (last - first).float() / (T - 1))
    span = rate * (T - 1)
    u = _u(g, B, 0.0, 1.0)
    # slower: start in [max(0, last - span), min(first, T - 1 - span)] (non-empty: span >= last - first)
    lo = torch.clamp(last.float() - span, min=0.0)
    hi = torch.minimum(first.float(), (T - 1) - span).clamp_min(lo)
    start = torch.where(span < T - 1, lo + u * (hi - lo), -u * (span - (T - 1)))
    idx = start[:, None] + rate[:, None] * torch.arange(T)[None, :]
    return _gather_time(x, idx)


def scale_jitter(x: Tensor, g: torch.Generator) -> Tensor:
    """Zoom each clip by a random factor in [0.55, 1.25] (log-uniform) about the centre (edge padding)."""
    B, C, T, H, W = x.shape
    s = _log_u(g, B, 0.55, 1.25)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = 1.0 / s
    theta[:, 1, 1] = 1.0 / s
    frames = x.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    grid = F.affine_grid(theta.repeat_interleave(T, 0), [B * T, C, H, W], align_corners=False)
    out = F.grid_sample(frames, grid, padding_mode="border", align_corners=False)
    return out.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4).contiguous()


def colour_texture_jitter(x: Tensor, g: torch.Generator) -> Tensor:
    """Random colour mixing (a random channel permutation blended with identity) and brightness, a random
    sinusoidal grating (0.02-0.45 cycles/pixel, contrast 0-0.15 of the normalised range) and noise."""
    B, C, T, H, W = x.shape
    eye = torch.eye(3)
    mats = []
    for _ in range(B):
        perm = eye[torch.randperm(3, generator=g)]
        a = float(torch.rand(1, generator=g))
        mats.append(a * perm + (1 - a) * eye)
    mix = torch.stack(mats) * _u(g, B, 0.7, 1.3)[:, None, None]
    out = torch.einsum("bij,bjthw->bithw", mix, x)
    freq, ang, con = _u(g, B, 0.02, 0.45), _u(g, B, 0.0, math.pi), _u(g, B, 0.0, 0.6)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=x.dtype), torch.arange(W, dtype=x.dtype), indexing="ij")
    phase = xx[None] * torch.cos(ang)[:, None, None] + yy[None] * torch.sin(ang)[:, None, None]
    grating = con[:, None, None] * torch.sin(2 * math.pi * freq[:, None, None] * phase)
    out = out + grating[:, None, None]
    return out + _u(g, B, 0.0, 0.25)[:, None, None, None, None] * torch.randn(out.shape, generator=g)


def style_jitter(x: Tensor, g: torch.Generator) -> Tensor:
    """Monotone random time-warp (t -> t^e, e in [0.5, 2]), +-1 frame jitter and motion-magnitude jitter."""
    B, _, T = x.shape[:3]
    t = torch.linspace(0.0, 1.0, T)
    e = _log_u(g, B, 0.5, 2.0)
    idx = (t[None, :] ** e[:, None]) * (T - 1) + torch.randint(-1, 2, (B, T), generator=g) * (
        torch.rand(B, 1, generator=g) < 0.5)
    x = _gather_time(x, idx.sort(dim=1).values)
    mean = x.mean(dim=2, keepdim=True)
    return mean + _log_u(g, B, 0.5, 1.8)[:, None, None, None, None] * (x - mean)


def _mixed(x: Tensor, g: torch.Generator) -> Tensor:
    return style_jitter(colour_texture_jitter(scale_jitter(time_warp(x, g), g), g), g)


#: factor -> its positive control
CONTROLS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "tempo": time_warp, "size": scale_jitter, "appearance": colour_texture_jitter, "style": style_jitter,
    "mixed": _mixed,
}


def augmentation_recipe(x: Tensor, g: torch.Generator) -> Tensor:
    """The suite's augmentation baseline (arm ``augment``): temporal warp, then scale, then colour/texture jitter
    (the interventions of the tempo, size and appearance controls), each clip with its own draws."""
    return colour_texture_jitter(scale_jitter(time_warp(x, g), g), g)


#: what a training can apply to every batch by name: each factor's positive control and the augmentation baseline
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {**CONTROLS, "recipe": augmentation_recipe}


def control_aug(factor: str, x: Tensor, g: torch.Generator) -> Tensor:
    """The augmentation ``factor`` of ``AUGMENTATIONS`` (a factor's positive control, or ``recipe``) applied to a
    batch (B, 3, T, H, W)."""
    return AUGMENTATIONS[factor](x, g)
