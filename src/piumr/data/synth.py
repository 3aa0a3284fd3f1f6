"""Synthetic MA-52: rendered seated figures doing micro-actions, in the exact MA-52 on-disk format.

MA-52 is gated, so the project's embedded default dataset is generated here. Every clip is a
real H.264 mp4 (libx264, yuv420p, ``size`` x ``size``, ``frames`` frames at ``fps``) showing a
cartoon seated figure (chair, head with hair/face/eyes/mouth, torso, upper arms, forearms,
hands with one finger, thighs, shins, feet) in front of a wall, performing one micro-action.

Labels are the real MA-52 action indices (0..51), so the 52-way head and the official 52 -> 7
body mapping work unchanged. By default only ``classes_per_body`` classes per body group are
rendered, chosen from a fixed per-group priority order (:data:`_PRIORITY`, the most visually
distinct motions first); ``classes_per_body=13`` gives all 52. Classes of one body group move the
same body part (whole torso / head / free hands / legs / hand on torso / hand on head / hand on
leg) and differ in direction, location, periodicity and temporal order (e.g. "spread legs" is
closed -> open, "closing legs" open -> closed), so body level is easier than action level.

Layout written by :func:`generate` (all text files CRLF)::

    out/train/PPPP_BB_NNNN.mp4 ...        official-like split (person-OVERLAPPING):
    out/val/PPPP_BB_NNNN.mp4 ...          every person has clips in train, val and test
    out/test/PPPP_BB_NNNN.mp4 ...         (test keeps the PPPP_BB_NNNN naming and TRUE labels:
                                           there is no hidden test server for synthetic data)
    out/train_list_videos.txt  out/val_list_videos.txt  out/test_list_videos.txt
    out/label_name.txt                    all 52 MA-52 names, ``index<TAB>name``
    out/synth_meta.json                   seed, parameters, classes, per-person attributes, counts
    out/cross_subject/                    a complete, self-contained MA-52 root, person-DISJOINT:
        train/ val/                       hard links (copies where the file system has none) to
        train_list_videos.txt             the clips above; every clip of a person goes to the
        val_list_videos.txt               same side; no val person appears in train
        label_name.txt

Cross-subject design: ``out/cross_subject`` is read exactly like any MA-52 root (list entries are
bare file names resolved in the root's own ``train/`` / ``val/`` folders), so no reader needs to
follow paths into sibling folders. Hard links cost no extra disk space.

Splits: ``PPPP`` = participant id 0001.., ``BB`` = body group of the label (00..06), ``NNNN`` =
the participant's clip number 0001... Each person performs the classes round-robin in a shuffled
order; each person's clips go, class-stratified, about 50/25/25 to train/val/test (as in MA-52).
The cross-subject split puts ``round(persons / 3)`` (at least 1) persons in val.

Person variation (fixed per participant, drawn from ``seed``): body size and limb proportions,
girth, head size, tempo (execution speed), amplitude, motion style (ease exponent for
transitions, peaked/flat oscillation shape, tremor harmonic, phase lag), handedness, preferred
turning side, resting posture (slouch, lean, head tilt, hand rest position), clothing and sleeve
length, skin, hair, glasses, chair and wall colours, camera offset/scale/roll, sensor noise.
Clip variation: start phase and onset time, +-10% tempo, +-15% amplitude, occasional side flip,
camera jitter, idle breathing sway, fresh pixel noise.

Determinism: the same parameters give byte-identical list files and byte-identical mp4 files
(libx264 with one thread and ``mbtree=0``; frames are converted to yuv420p in numpy, not by
swscale); ``workers`` and ``progress`` never change the output. Workers are processes from the
platform's default start method (fork on Linux); they only use numpy and PyAV.

:func:`ensure_synth` caches a dataset under a directory named from a hash of the parameters,
built in a temporary sibling directory and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from piumr.data.ma52 import ACTION_NAMES as _ACTION_NAMES
from piumr.data.ma52 import ACTION_TO_BODY as _ACTION_TO_BODY

__all__ = ["SynthInfo", "PersonAttrs", "GENERATOR_VERSION", "generate", "ensure_synth", "render_clip"]

GENERATOR_VERSION = "1"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

# Per body group, the order in which classes are taken when classes_per_body < group size.
_PRIORITY: tuple[tuple[int, ...], ...] = (
    (0, 4, 2, 3, 1),
    (9, 10, 8, 7, 5, 6),
    (19, 17, 13, 20, 14, 18, 23, 15, 16, 21, 22, 12, 11),
    (24, 28, 26, 27, 29, 30, 31, 25),
    (33, 36, 37, 32, 35, 34),
    (41, 39, 45, 43, 40, 38, 42, 44, 46, 47),
    (48, 50, 49, 51),
)


def _crlf(lines: Sequence[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def select_classes(classes_per_body: int) -> tuple[int, ...]:
    """Sorted action labels generated for ``classes_per_body`` (min(n, group size) per group)."""
    if classes_per_body < 1:
        raise ValueError(f"classes_per_body must be >= 1, got {classes_per_body}")
    chosen = [c for group in _PRIORITY for c in group[:classes_per_body]]
    return tuple(sorted(chosen))


# --------------------------------------------------------------------------------------------
# Persons
# --------------------------------------------------------------------------------------------

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class PersonAttrs:
    """Everything fixed per participant. Lengths are in body units (hip-to-neck ~ 1)."""

    pid: int
    # physique
    torso_len: float
    torso_r: float
    shoulder_w: float
    hip_w: float
    neck_len: float
    head_r: float
    upper_arm: float
    forearm: float
    arm_r: float
    hand_r: float
    thigh: float
    shin: float
    knee_w: float
    leg_r: float
    foot_len: float
    # motion style
    tempo: float
    amplitude: float
    ease: float
    peak: float
    tremor: float
    tremor_freq: float
    tremor_phase: float
    lag: float
    handed: int
    side: int
    slouch: float
    rest_lean: float
    rest_roll: float
    rest_pitch: float
    hands_on_lap: bool
    legs_in_phase: bool
    # appearance
    skin: RGB
    hair: RGB
    shirt: RGB
    sleeve_long: bool
    trousers: RGB
    shoes: RGB
    chair: RGB
    wall_top: RGB
    wall_bottom: RGB
    floor: RGB
    glasses: bool
    # camera / sensor
    cam_scale: float
    cam_dx: float
    cam_dy: float
    cam_roll: float
    noise: float


def _hsv(h: float, s: float, v: float) -> RGB:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(rgb[0], 4), round(rgb[1], 4), round(rgb[2], 4))


def make_person(seed: int, pid: int) -> PersonAttrs:
    """Draw the attributes of participant ``pid`` (deterministic in ``seed`` and ``pid``)."""
    r = np.random.default_rng([seed, 1, pid])

    def u(a: float, b: float) -> float:
        return round(float(r.uniform(a, b)), 4)

    def lu(a: float, b: float) -> float:
        return round(float(math.exp(r.uniform(math.log(a), math.log(b)))), 4)

    skin_base = u(0.0, 1.0)
    skin = (round(0.95 - 0.55 * skin_base, 4), round(0.78 - 0.50 * skin_base, 4),
            round(0.66 - 0.45 * skin_base, 4))
    hair = _hsv(u(0.02, 0.12), u(0.3, 0.8), u(0.08, 0.55) if r.random() < 0.85 else u(0.6, 0.9))
    wall_h, wall_s, wall_v = u(0.0, 1.0), u(0.0, 0.35), u(0.55, 0.97)
    return PersonAttrs(
        pid=pid,
        torso_len=u(0.88, 1.12), torso_r=u(0.2, 0.34), shoulder_w=u(0.3, 0.46),
        hip_w=u(0.2, 0.3), neck_len=u(0.1, 0.2), head_r=u(0.3, 0.4),
        upper_arm=u(0.5, 0.64), forearm=u(0.44, 0.56), arm_r=u(0.06, 0.1), hand_r=u(0.08, 0.11),
        thigh=u(0.22, 0.4), shin=u(0.6, 0.82), knee_w=u(0.22, 0.36), leg_r=u(0.09, 0.14),
        foot_len=u(0.12, 0.2),
        tempo=lu(0.65, 1.45), amplitude=lu(0.65, 1.45), ease=lu(0.55, 1.8), peak=lu(0.5, 2.0),
        tremor=u(0.0, 0.3), tremor_freq=u(3.0, 5.5), tremor_phase=u(0.0, 1.0), lag=u(-0.12, 0.12),
        handed=1 if r.random() < 0.7 else -1, side=1 if r.random() < 0.5 else -1,
        slouch=u(0.0, 0.3), rest_lean=u(-0.06, 0.06), rest_roll=u(-0.12, 0.12),
        rest_pitch=u(-0.15, 0.2), hands_on_lap=bool(r.random() < 0.4),
        legs_in_phase=bool(r.random() < 0.5),
        skin=skin, hair=hair,
        shirt=_hsv(u(0.0, 1.0), u(0.2, 0.9), u(0.2, 0.95)), sleeve_long=bool(r.random() < 0.5),
        trousers=_hsv(u(0.0, 1.0), u(0.1, 0.7), u(0.1, 0.7)),
        shoes=_hsv(u(0.0, 1.0), u(0.0, 0.5), u(0.05, 0.5)),
        chair=_hsv(u(0.0, 1.0), u(0.1, 0.6), u(0.15, 0.6)),
        wall_top=_hsv(wall_h, wall_s, wall_v),
        wall_bottom=_hsv(wall_h, wall_s, max(0.3, wall_v - u(0.0, 0.25))),
        floor=_hsv(u(0.0, 1.0), u(0.0, 0.4), u(0.25, 0.75)),
        glasses=bool(r.random() < 0.35),
        cam_scale=u(0.78, 1.0), cam_dx=u(-0.07, 0.07), cam_dy=u(-0.05, 0.05),
        cam_roll=u(-0.07, 0.07), noise=u(0.004, 0.035),
    )


# --------------------------------------------------------------------------------------------
# Motion: per-class channel curves
# --------------------------------------------------------------------------------------------

_ARM_SIGN = (-1.0, 1.0)  # arm/leg 0 = person's right = image left; 1 = person's left


class _Ctx:
    """Time base and person/clip style used by the class motion functions."""

    def __init__(self, p: PersonAttrs, frames: int, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng
        self.t: F64 = np.linspace(0.0, 1.0, frames)
        self.tempo = p.tempo * float(rng.uniform(0.9, 1.1))
        self.amp = p.amplitude * float(rng.uniform(0.85, 1.15))
        self.phase0 = float(rng.uniform(0.0, 1.0))
        self.side = p.side if rng.random() < 0.8 else -p.side
        self.active = 0 if p.handed > 0 else 1

    def _tremor(self) -> F64:
        p = self.p
        return p.tremor * np.sin(2 * np.pi * (p.tremor_freq * self.t + p.tremor_phase))

    def osc(self, cycles: float, phase: float = 0.0) -> F64:
        """Periodic curve in [-1, 1] with the person's tempo, peak shape and tremor."""
        s = np.sin(2 * np.pi * (cycles * self.tempo * self.t + self.phase0 + phase))
        shaped = np.sign(s) * np.abs(s) ** self.p.peak
        out: F64 = np.clip(shaped + 0.5 * self._tremor(), -1.3, 1.3)
        return out

    def osc01(self, cycles: float, phase: float = 0.0) -> F64:
        """Periodic curve in [0, 1] starting near 0 (a repeated out-and-back motion)."""
        s = 0.5 - 0.5 * np.cos(2 * np.pi * (cycles * self.tempo * self.t + 0.25 * self.phase0 + phase))
        out: F64 = s**self.p.peak + 0.15 * self._tremor() * s
        return out

    def _ease(self, u: F64) -> F64:
        u = np.clip(u, 0.0, 1.0) ** self.p.ease
        out: F64 = u * u * (3 - 2 * u)
        return out

    def step(self, dur: float = 0.4, lag: float = 0.0) -> F64:
        """0 -> 1 transition that then holds; onset and duration follow the person's tempo."""
        d = min(0.8, dur / self.tempo)
        start = float(self.rng.uniform(0.02, max(0.03, 0.95 - d) * 0.35)) + lag * self.p.lag
        u = self._ease((self.t - start) / d)
        out: F64 = u + 0.25 * self._tremor() * u * (1 - u) * 4
        return out

    def bump(self, hold: float = 0.3, rise: float = 0.25, lag: float = 0.0) -> F64:
        """0 -> 1 -> 0 (reach, hold, return)."""
        r_ = rise / self.tempo
        h = hold / self.tempo
        total = 2 * r_ + h
        if total > 0.95:
            k = 0.95 / total
            r_, h, total = r_ * k, h * k, 0.95
        start = float(self.rng.uniform(0.0, 0.98 - total)) + lag * self.p.lag
        up = self._ease((self.t - start) / r_)
        down = self._ease((self.t - start - r_ - h) / r_)
        out: F64 = up * (1 - down) + 0.25 * self._tremor() * up * (1 - down)
        return out


@dataclass
class _Motion:
    """Channel curves for one clip (arrays of length T)."""

    T: int
    lean: F64 = field(init=False)
    fwd: F64 = field(init=False)
    rise: F64 = field(init=False)
    yaw: F64 = field(init=False)
    shrug: F64 = field(init=False)
    pitch: F64 = field(init=False)
    hyaw: F64 = field(init=False)
    roll: F64 = field(init=False)
    arm_w: F64 = field(init=False)  # (2, T) blend rest -> target
    arm_off: F64 = field(init=False)  # (2, T, 2) outward-positive offset from landmark
    hand_open: F64 = field(init=False)  # (2, T)
    finger: F64 = field(init=False)  # (2, T) finger extension 0..1
    finger_ang: F64 = field(init=False)  # (2, T) finger angle relative to forearm (outward +)
    knee_off: F64 = field(init=False)  # (2, T, 2)
    foot_off: F64 = field(init=False)  # (2, T, 2)
    foot_scale: F64 = field(init=False)  # (2, T)
    arm_lm: list[str] = field(default_factory=lambda: ["rest", "rest"])
    arm_layer: list[str] = field(default_factory=lambda: ["front", "front"])
    arm_order: tuple[int, int] = (0, 1)
    leg_front: int = -1
    obj: bool = False

    def __post_init__(self) -> None:
        z = np.zeros(self.T)
        self.lean, self.fwd, self.rise, self.yaw = z.copy(), z.copy(), z.copy(), z.copy()
        self.shrug, self.pitch, self.hyaw, self.roll = z.copy(), z.copy(), z.copy(), z.copy()
        self.arm_w = np.zeros((2, self.T))
        self.arm_off = np.zeros((2, self.T, 2))
        self.hand_open = np.ones((2, self.T))
        self.finger = np.zeros((2, self.T))
        self.finger_ang = np.zeros((2, self.T))
        self.knee_off = np.zeros((2, self.T, 2))
        self.foot_off = np.zeros((2, self.T, 2))
        self.foot_scale = np.ones((2, self.T))

    def reach(self, arm: int, lm: str, w: F64, dx: F64 | float = 0.0, dy: F64 | float = 0.0) -> None:
        self.arm_lm[arm] = lm
        self.arm_w[arm] = w
        self.arm_off[arm, :, 0] = dx
        self.arm_off[arm, :, 1] = dy


_MotionFn = Callable[[_Ctx, _Motion], None]
_MOTIONS: dict[int, _MotionFn] = {}


def _motion(label: int) -> Callable[[_MotionFn], _MotionFn]:
    def deco(fn: _MotionFn) -> _MotionFn:
        _MOTIONS[label] = fn
        return fn

    return deco


# ---- body (A): the whole upper body moves ----
@_motion(0)
def _shaking_body(c: _Ctx, m: _Motion) -> None:
    m.lean += 0.1 * c.amp * c.osc(2.0)


@_motion(1)
def _sitting_straightly(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.45)
    m.fwd += min(0.8, 0.55 * c.amp) * (1 - u)
    m.pitch += 0.25 * (1 - u)
    m.rise += 0.05 * u


@_motion(2)
def _shrugging(c: _Ctx, m: _Motion) -> None:
    b = c.bump(hold=0.12, rise=0.18)
    m.shrug += min(0.25, 0.15 * c.amp) * b
    m.pitch -= 0.1 * b


@_motion(3)
def _turning_around(c: _Ctx, m: _Motion) -> None:
    b = c.bump(hold=0.25, rise=0.28)
    m.yaw += c.side * min(1.3, 0.9 * c.amp) * b
    m.lean += 0.05 * c.side * b


@_motion(4)
def _rising_up(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.5)
    m.rise += min(0.45, 0.3 * c.amp) * u
    m.fwd += 0.4 * 4 * u * (1 - u)


# ---- head (B): only the head moves ----
@_motion(5)
def _bowing_head(c: _Ctx, m: _Motion) -> None:
    m.pitch += min(0.9, 0.6 * c.amp) * c.step(0.35)


@_motion(6)
def _head_up(c: _Ctx, m: _Motion) -> None:
    m.pitch -= min(0.8, 0.55 * c.amp) * c.step(0.35)


@_motion(7)
def _tilting_head(c: _Ctx, m: _Motion) -> None:
    m.roll += c.side * min(0.55, 0.35 * c.amp) * c.bump(hold=0.35)


@_motion(8)
def _turning_head(c: _Ctx, m: _Motion) -> None:
    m.hyaw += c.side * min(1.2, 0.8 * c.amp) * c.bump(hold=0.3)


@_motion(9)
def _nodding(c: _Ctx, m: _Motion) -> None:
    m.pitch += min(0.7, 0.45 * c.amp) * c.osc01(2.0)


@_motion(10)
def _shaking_head(c: _Ctx, m: _Motion) -> None:
    m.hyaw += min(0.8, 0.5 * c.amp) * c.osc(2.0)


# ---- upper limb (C): hands move in free space ----
@_motion(11)
def _scratching_arms(c: _Ctx, m: _Motion) -> None:
    a = c.active
    m.reach(1 - a, "lap", np.full(m.T, 0.6))
    w = c.bump(hold=0.4)
    m.reach(a, "forearm_opp", w, dx=0.08 * c.amp * c.osc(3.0) * w)


@_motion(12)
def _playing_objects(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "belly", np.ones(m.T), dx=0.07 + 0.05 * c.amp * c.osc(1.5, 0.5 * k),
                dy=0.2 + 0.05 * c.amp * c.osc(1.5, 0.25 + 0.5 * k))
    m.obj = True


@_motion(13)
def _putting_hands_together(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.4)
    for k in (0, 1):
        m.reach(k, "center", c.step(0.4, lag=k) if k else u, dx=0.05)
        m.finger[k] = u


@_motion(14)
def _rubbing_hands(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "belly", np.ones(m.T), dx=0.06, dy=0.1 + (1 - 2 * k) * 0.06 * c.amp * c.osc(2.5))


@_motion(15)
def _pointing_oneself(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.3)
    m.reach(a, "chest", w, dx=0.22, dy=0.06 * c.osc01(2.0) * w)
    m.finger[a] = w
    m.hand_open[a] = 1 - 0.3 * w


@_motion(16)
def _clenching_fist(c: _Ctx, m: _Motion) -> None:
    s = c.osc01(1.5)
    for k in (0, 1):
        m.hand_open[k] = 1.25 - 0.55 * s
        m.finger[k] = 1 - s
        m.arm_off[k, :, 1] -= 0.04 * s
        m.arm_w[k] = 0.0


@_motion(17)
def _stretching_arms(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "above", c.bump(hold=0.2, rise=0.28, lag=k) if k else c.bump(hold=0.2, rise=0.28))
        m.hand_open[k] = 1.2


@_motion(18)
def _retracting_arms(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.45)
    for k in (0, 1):
        m.reach(k, "side_out", 1 - u, dx=0.1 * c.amp)
        m.hand_open[k] = 1.2 - 0.2 * u


@_motion(19)
def _waving(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.5, rise=0.2)
    m.reach(a, "wave", w, dx=0.13 * c.amp * c.osc(2.5) * w)
    m.finger[a] = w
    m.hand_open[a] = 1 + 0.3 * w


@_motion(20)
def _spreading_hands(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.4)
    for k in (0, 1):
        m.reach(k, "belly", np.ones(m.T), dx=0.06 + min(0.75, 0.5 * c.amp) * u, dy=0.05)
        m.hand_open[k] = 1 + 0.35 * u
        m.finger[k] = u


@_motion(21)
def _hands_touching_fingers(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "belly", np.ones(m.T), dx=0.16, dy=0.12)
        m.finger[k] = 0.4 + 0.6 * c.osc01(2.0, 0.5 * k)
        m.finger_ang[k] = -0.6


@_motion(22)
def _other_finger_movements(c: _Ctx, m: _Motion) -> None:
    a = c.active
    m.arm_off[a, :, 1] -= 0.06
    m.finger[a] = 1.0
    m.finger_ang[a] = 0.7 * c.amp * c.osc(2.5)


@_motion(23)
def _illustrative_gestures(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.5, rise=0.18)
    ph = [float(c.rng.uniform()) for _ in range(3)]
    t = c.t * c.tempo
    dx = 0.14 * np.sin(2 * np.pi * (1.3 * t + ph[0])) + 0.07 * np.sin(2 * np.pi * (2.7 * t + ph[1]))
    dy = 0.12 * np.sin(2 * np.pi * (1.7 * t + ph[2]))
    m.reach(a, "gesture", w, dx=c.amp * dx * w, dy=c.amp * dy * w)
    m.hand_open[a] = 1 + 0.2 * w
    m.finger[a] = 0.5 * w


# ---- lower limb (D): legs and feet move ----
@_motion(24)
def _shaking_legs(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        ph = 0.0 if c.p.legs_in_phase else 0.5 * k
        m.knee_off[k, :, 1] += 0.06 * c.amp * c.osc(2.5, ph)


@_motion(25)
def _curling_legs(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.45)
    for k in (0, 1):
        m.knee_off[k, :, 1] -= 0.15 * c.amp * u
        m.foot_off[k, :, 1] -= 0.32 * c.amp * u
        m.foot_scale[k] = 1 - 0.25 * u


@_motion(26)
def _spread_legs(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.4)
    for k in (0, 1):
        m.knee_off[k, :, 0] += -0.08 + 0.22 * c.amp * u
        m.foot_off[k, :, 0] += -0.05 + 0.15 * c.amp * u


@_motion(27)
def _closing_legs(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.4)
    for k in (0, 1):
        m.knee_off[k, :, 0] += 0.16 * c.amp - (0.16 * c.amp + 0.08) * u
        m.foot_off[k, :, 0] += 0.1 * c.amp - (0.1 * c.amp + 0.05) * u


@_motion(28)
def _crossing_legs(c: _Ctx, m: _Motion) -> None:
    k = 0 if c.side > 0 else 1
    u = c.step(0.5)
    m.knee_off[k, :, 0] -= 0.55 * u
    m.knee_off[k, :, 1] -= 0.12 * u
    m.foot_off[k, :, 0] -= 0.75 * u
    m.foot_off[k, :, 1] -= 0.4 * u
    m.leg_front = k


@_motion(29)
def _stretching_feet(c: _Ctx, m: _Motion) -> None:
    u = c.step(0.4)
    for k in (0, 1):
        m.knee_off[k, :, 1] += 0.04 * u
        m.foot_off[k, :, 1] += 0.12 * c.amp * u
        m.foot_off[k, :, 0] += 0.1 * u
        m.foot_scale[k] = 1 + 0.7 * u


@_motion(30)
def _retracting_feet(c: _Ctx, m: _Motion) -> None:
    u = 1 - c.step(0.4)
    for k in (0, 1):
        m.knee_off[k, :, 1] += 0.04 * u
        m.foot_off[k, :, 1] += 0.12 * c.amp * u
        m.foot_off[k, :, 0] += 0.1 * u
        m.foot_scale[k] = 1 + 0.7 * u


@_motion(31)
def _tiptoe(c: _Ctx, m: _Motion) -> None:
    b = c.bump(hold=0.25, rise=0.2)
    for k in (0, 1):
        m.knee_off[k, :, 1] -= 0.1 * c.amp * b
        m.foot_off[k, :, 1] -= 0.06 * c.amp * b
        m.foot_scale[k] = 1 - 0.35 * b


# ---- body-hand (E): a hand touches the torso ----
@_motion(32)
def _touch_neck(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "neck", w, dy=0.04 * c.amp * c.osc(3.0) * w)


@_motion(33)
def _touch_chest(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "chest", w, dx=0.05 * c.amp * c.osc(2.0) * w, dy=0.05 * c.amp * c.osc(2.0, 0.25) * w)


@_motion(34)
def _touch_back(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.4)
    m.reach(a, "back", w, dy=0.07 * c.amp * c.osc(3.0) * w)
    m.arm_layer[a] = "back"


@_motion(35)
def _touch_shoulder(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "shoulder_opp", w, dy=-0.05 * c.amp * c.osc01(2.5) * w)


@_motion(36)
def _arms_akimbo(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "hip_own", c.step(0.4, lag=k))


@_motion(37)
def _crossing_arms(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "cross", c.step(0.4, lag=k))
    m.arm_order = (1 - c.active, c.active)


# ---- head-hand (F): a hand touches the head ----
@_motion(38)
def _tidy_hair(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "crown", w, dx=0.06 * c.amp * c.osc(2.0) * w, dy=0.05 * c.amp * c.osc(2.0, 0.25) * w)
    m.roll -= 0.08 * c.side * w


@_motion(39)
def _touch_hindbrain(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.4)
    m.reach(a, "hindbrain", w, dx=0.05 * c.amp * c.osc(3.0) * w)
    m.arm_layer[a] = "mid"
    m.pitch += 0.15 * w


@_motion(40)
def _touch_forehead(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "forehead", w, dx=0.06 * c.amp * c.osc(2.0) * w)


@_motion(41)
def _touch_face(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "cheek", w, dy=0.05 * c.amp * c.osc(3.0) * w)


@_motion(42)
def _rubbing_eyes(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    for k in (0, 1):
        m.reach(k, "eye", w, dx=0.03 * c.amp * c.osc(2.5, 0.5 * k) * w, dy=0.03 * c.amp * c.osc(2.5, 0.25 + 0.5 * k) * w)
        m.hand_open[k] = 0.85
    m.pitch += 0.15 * w


@_motion(43)
def _touching_nose(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.12, rise=0.2)
    m.reach(a, "nose", w)
    m.finger[a] = w
    m.hand_open[a] = 0.8


@_motion(44)
def _touching_ears(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4)
    m.reach(c.active, "ear", w, dy=0.04 * c.amp * c.osc(2.5) * w)
    m.roll += 0.1 * (1 if c.active == 0 else -1) * w


@_motion(45)
def _covering_face(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.45)
    for k in (0, 1):
        m.reach(k, "face_half", w)
        m.hand_open[k] = 1 + 0.6 * w
    m.pitch += 0.2 * w


@_motion(46)
def _covering_mouth(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.45)
    m.reach(a, "mouth", w)
    m.hand_open[a] = 1 + 0.4 * w


@_motion(47)
def _pushing_glasses(c: _Ctx, m: _Motion) -> None:
    a = c.active
    w = c.bump(hold=0.15, rise=0.2)
    m.reach(a, "bridge", w, dy=-0.06 * w * w)
    m.finger[a] = w
    m.finger_ang[a] = 0.0
    m.hand_open[a] = 0.75


# ---- leg-hand (G): a hand touches a leg ----
@_motion(48)
def _patting_legs(c: _Ctx, m: _Motion) -> None:
    for k in (0, 1):
        m.reach(k, "thigh_own", np.ones(m.T), dy=-0.09 * c.amp * c.osc01(2.5))


@_motion(49)
def _touching_legs(c: _Ctx, m: _Motion) -> None:
    a = c.active
    u = c.step(0.6)
    m.reach(a, "thigh_own", np.ones(m.T), dy=-0.08 + 0.3 * c.amp * u, dx=0.04 * u)


@_motion(50)
def _scratching_legs(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.45)
    m.reach(c.active, "knee_own", w, dx=0.05 * c.amp * c.osc(3.0) * w)


@_motion(51)
def _scratching_feet(c: _Ctx, m: _Motion) -> None:
    w = c.bump(hold=0.4, rise=0.3)
    m.fwd += 0.55 * w
    m.pitch += 0.3 * w
    m.reach(c.active, "foot_own", w, dx=0.05 * c.amp * c.osc(3.0) * w)


assert sorted(_MOTIONS) == list(range(52)), "every MA-52 class needs a motion"


# --------------------------------------------------------------------------------------------
# Skeleton
# --------------------------------------------------------------------------------------------


def _rot(v: F64, ang: F64) -> F64:
    """Rotate (T,2) vectors by per-frame angles (T,) (image coords, y down)."""
    c, s = np.cos(ang), np.sin(ang)
    out: F64 = np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], axis=1)
    return out


def _vec(x: F64 | float, y: F64 | float, T: int) -> F64:
    out: F64 = np.stack([np.broadcast_to(np.asarray(x, dtype=np.float64), (T,)),
                         np.broadcast_to(np.asarray(y, dtype=np.float64), (T,))], axis=1)
    return out


def _ik(shoulder: F64, target: F64, a: float, b: float, sign: float) -> tuple[F64, F64]:
    """Two-link IK: elbow and (reach-clamped) hand; the elbow bends outward/down."""
    d_vec = target - shoulder
    dist = np.linalg.norm(d_vec, axis=1)
    d = np.clip(dist, abs(a - b) + 0.05, (a + b) * 0.999)
    unit = d_vec / np.maximum(dist, 1e-6)[:, None]
    hand = shoulder + unit * d[:, None]
    phi = np.arctan2(unit[:, 1], unit[:, 0])
    alpha = np.arccos(np.clip((a * a + d * d - b * b) / (2 * a * d), -1.0, 1.0))
    e1 = shoulder + a * np.stack([np.cos(phi + alpha), np.sin(phi + alpha)], axis=1)
    e2 = shoulder + a * np.stack([np.cos(phi - alpha), np.sin(phi - alpha)], axis=1)
    score1 = sign * e1[:, 0] + 0.3 * e1[:, 1]
    score2 = sign * e2[:, 0] + 0.3 * e2[:, 1]
    elbow: F64 = np.where((score1 >= score2)[:, None], e1, e2)
    return elbow, hand


# --------------------------------------------------------------------------------------------
# Rasteriser: soft-edged capsules and ellipses, vectorised over frames inside a bounding box
# --------------------------------------------------------------------------------------------


class _Canvas:
    def __init__(self, img: F32) -> None:
        self.img = img  # (T, H, W, 3)
        self.T, self.H, self.W = img.shape[0], img.shape[1], img.shape[2]
        self.ys = np.arange(self.H, dtype=np.float32) + 0.5
        self.xs = np.arange(self.W, dtype=np.float32) + 0.5

    def _box(self, lo: F64, hi: F64) -> tuple[int, int, int, int] | None:
        x0 = max(0, int(math.floor(float(lo[0]))))
        y0 = max(0, int(math.floor(float(lo[1]))))
        x1 = min(self.W, int(math.ceil(float(hi[0]))) + 1)
        y1 = min(self.H, int(math.ceil(float(hi[1]))) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1

    def _blend(self, box: tuple[int, int, int, int], cov: F32, color: RGB, alpha: F64 | None) -> None:
        x0, y0, x1, y1 = box
        if alpha is not None:
            cov = cov * alpha.astype(np.float32)[:, None, None]
        region = self.img[:, y0:y1, x0:x1, :]
        col = np.asarray(color, dtype=np.float32)
        region += cov[..., None] * (col - region)

    def capsule(self, p0: F64, p1: F64, r: F64 | float, color: RGB, alpha: F64 | None = None) -> None:
        """Segment p0-p1 (T,2 pixels) thickened by radius r (pixels)."""
        rr = np.broadcast_to(np.asarray(r, dtype=np.float64), (self.T,))
        pad = float(rr.max()) + 1.0
        box = self._box(np.minimum(p0, p1).min(axis=0) - pad, np.maximum(p0, p1).max(axis=0) + pad)
        if box is None:
            return
        x0, y0, x1, y1 = box
        f = np.float32
        ax, ay = p0[:, 0].astype(f)[:, None, None], p0[:, 1].astype(f)[:, None, None]
        vx = (p1[:, 0] - p0[:, 0]).astype(f)[:, None, None]
        vy = (p1[:, 1] - p0[:, 1]).astype(f)[:, None, None]
        wx = self.xs[None, None, x0:x1] - ax
        wy = self.ys[None, y0:y1, None] - ay
        t = np.clip((wx * vx + wy * vy) / (vx * vx + vy * vy + f(1e-6)), 0.0, 1.0)
        dx = wx - t * vx
        dy = wy - t * vy
        dist = np.sqrt(dx * dx + dy * dy)
        cov = np.clip(rr.astype(f)[:, None, None] - dist + f(0.5), 0.0, 1.0)
        self._blend(box, cov, color, alpha)

    def ellipse(self, c: F64, rx: F64 | float, ry: F64 | float, ang: F64 | float, color: RGB,
                alpha: F64 | None = None) -> None:
        """Filled rotated ellipse, centre c (T,2), radii and angle per frame."""
        T = self.T
        rxa = np.broadcast_to(np.asarray(rx, dtype=np.float64), (T,))
        rya = np.broadcast_to(np.asarray(ry, dtype=np.float64), (T,))
        anga = np.broadcast_to(np.asarray(ang, dtype=np.float64), (T,))
        pad = float(np.maximum(rxa, rya).max()) + 1.0
        box = self._box(c.min(axis=0) - pad, c.max(axis=0) + pad)
        if box is None:
            return
        x0, y0, x1, y1 = box
        f = np.float32
        dx = self.xs[None, None, x0:x1] - c[:, 0].astype(f)[:, None, None]
        dy = self.ys[None, y0:y1, None] - c[:, 1].astype(f)[:, None, None]
        co = np.cos(anga).astype(f)[:, None, None]
        si = np.sin(anga).astype(f)[:, None, None]
        u = (dx * co + dy * si) / np.maximum(rxa, 0.3).astype(f)[:, None, None]
        v = (-dx * si + dy * co) / np.maximum(rya, 0.3).astype(f)[:, None, None]
        fr = np.sqrt(u * u + v * v)
        rho = np.sqrt(dx * dx + dy * dy)
        cov = np.clip(rho * (1 - fr) / np.maximum(fr, f(1e-4)) + f(0.5), 0.0, 1.0)
        self._blend(box, cov, color, alpha)


def _shade(c: RGB, k: float) -> RGB:
    return (min(1.0, c[0] * k), min(1.0, c[1] * k), min(1.0, c[2] * k))


def render_clip(person: PersonAttrs, label: int, frames: int, size: int, clip_seed: int) -> U8:
    """Render one clip of ``label`` performed by ``person``: uint8 array (T, size, size, 3)."""
    p = person
    T = frames
    rng = np.random.default_rng(clip_seed)
    ctx = _Ctx(p, T, rng)
    m = _Motion(T)
    _MOTIONS[label](ctx, m)
    t = ctx.t

    # resting posture + idle breathing
    breath = 0.012 * np.sin(2 * np.pi * (rng.uniform(0.3, 0.8) * t + rng.uniform()))
    lean = p.rest_lean + m.lean
    fwd = np.clip(p.slouch + m.fwd, 0.0, 1.0)
    pitch = np.clip(p.rest_pitch + m.pitch + 0.3 * fwd, -0.9, 1.0)
    roll = p.rest_roll + m.roll
    hyaw = m.hyaw + 1.1 * m.yaw
    yaw = m.yaw

    # ---- body ----
    hip_c = _vec(0.0, -m.rise, T)
    up = _rot(_vec(0.0, -1.0, T), lean)
    perp = _rot(_vec(1.0, 0.0, T), lean)
    tl = p.torso_len * (1 - 0.3 * fwd) + breath
    neck = hip_c + up * tl[:, None]
    width_k = 0.45 + 0.55 * np.cos(yaw)
    shoulders = [neck + perp * (s * p.shoulder_w * width_k)[:, None] + up * (0.06 + m.shrug - 0.08)[:, None]
                 for s in _ARM_SIGN]
    hips = [_vec(s * p.hip_w, 0.0, T) + _vec(0.0, -0.6 * m.rise, T) for s in _ARM_SIGN]
    head_ang = lean + roll
    head_up = _rot(_vec(0.0, -1.0, T), head_ang)
    head_c = (neck + head_up * (p.neck_len + 0.95 * p.head_r - 0.5 * m.shrug)[:, None]
              + _vec(0.0, 0.12 * p.head_r * pitch, T))
    hr = p.head_r
    yaw_c = np.clip(hyaw, -1.5, 1.5)
    face_c = head_c + _rot(_vec(0.55 * hr * np.sin(yaw_c), 0.12 * hr + 0.5 * hr * pitch, T), head_ang)
    face_vis = np.clip((1.55 - np.abs(hyaw)) / 0.5, 0.0, 1.0)
    eyes = [face_c + _rot(_vec(e * 0.33 * hr * np.cos(yaw_c) + 0.1 * hr * np.sin(yaw_c), -0.12 * hr, T), head_ang)
            for e in (-1.0, 1.0)]
    mouth_c = face_c + _rot(_vec(0.1 * hr * np.sin(yaw_c), 0.42 * hr * (1 - 0.3 * np.clip(pitch, 0, 1)), T), head_ang)

    # ---- legs ----
    knees: list[F64] = []
    feet: list[F64] = []
    for k, s in enumerate(_ARM_SIGN):
        kn = _vec(s * p.knee_w + s * m.knee_off[k, :, 0], p.thigh + m.knee_off[k, :, 1], T)
        ft = kn + _vec(s * 0.02 + s * (m.foot_off[k, :, 0] - m.knee_off[k, :, 0]),
                       p.shin + m.foot_off[k, :, 1] - m.knee_off[k, :, 1], T)
        knees.append(kn)
        feet.append(ft)

    # ---- arms ----
    def landmark(k: int, name: str, forearm_opp: F64) -> F64:
        s = _ARM_SIGN[k]
        if name == "rest":
            if p.hands_on_lap:
                return _vec(s * 0.1, 0.5 * p.thigh - 0.06, T)
            return 0.55 * hips[k] + 0.45 * knees[k] + _vec(0.0, -0.08, T)
        table: dict[str, F64] = {
            "lap": _vec(s * 0.08, 0.4 * p.thigh - 0.05, T),
            "belly": hip_c + up * (0.35 * tl)[:, None] + _vec(0.0, 0.0, T),
            "center": neck + up * (-0.38 * tl)[:, None],
            "chest": neck + up * (-0.3 * tl)[:, None],
            "gesture": neck + up * (-0.5 * tl)[:, None] + perp * (s * 0.35),
            "above": head_c + _vec(s * 0.45, -0.5 - hr, T),
            "side_out": shoulders[k] + _vec(s * (p.upper_arm + p.forearm) * 0.8, 0.05, T),
            "wave": shoulders[k] + _vec(s * 0.3, -0.55, T),
            "forearm_opp": forearm_opp,
            "neck": neck + up * (0.05 + 0.3 * p.neck_len) + perp * (s * 0.08),
            "back": shoulders[k] + _vec(-s * 0.22, 0.45, T),
            "shoulder_opp": shoulders[1 - k] + _vec(0.0, 0.06, T),
            "hip_own": hips[k] + _vec(s * 0.1, -0.12, T) - _vec(0.0, m.rise * 0.4, T),
            "cross": neck + up * (-0.42 * tl)[:, None] + perp * (-s * 0.32),
            "crown": head_c + _rot(_vec(s * 0.5 * hr, -0.95 * hr, T), head_ang),
            "hindbrain": head_c + _rot(_vec(s * 0.35 * hr, -0.3 * hr, T), head_ang),
            "forehead": face_c + _rot(_vec(0.0, -0.55 * hr, T), head_ang),
            "cheek": face_c + _rot(_vec(s * 0.5 * hr, 0.2 * hr, T), head_ang),
            "eye": eyes[1 if s > 0 else 0] + _vec(s * 0.03, 0.02, T),
            "nose": face_c + _rot(_vec(0.0, 0.12 * hr, T), head_ang),
            "ear": head_c + _rot(_vec(s * 1.0 * hr, 0.05 * hr, T), head_ang),
            "face_half": face_c + _rot(_vec(s * 0.35 * hr, 0.0, T), head_ang),
            "mouth": mouth_c,
            "bridge": face_c + _rot(_vec(0.0, -0.05 * hr, T), head_ang),
            "thigh_own": 0.6 * hips[k] + 0.4 * knees[k] + _vec(0.0, -0.05, T),
            "knee_own": knees[k] + _vec(0.0, -0.04, T),
            "foot_own": feet[k] + _vec(0.0, -0.1, T),
        }
        return table[name]

    elbows: list[F64] = [np.zeros((T, 2)), np.zeros((T, 2))]
    hands: list[F64] = [np.zeros((T, 2)), np.zeros((T, 2))]
    active = ctx.active
    for k in (1 - active, active):  # the passive arm first: its forearm is a landmark
        s = _ARM_SIGN[k]
        other = 1 - k
        forearm_opp = 0.5 * (elbows[other] + hands[other]) if k == active else _vec(0.0, 0.0, T)
        rest = landmark(k, "rest", forearm_opp) + _vec(0.0, 0.0, T)
        tgt = landmark(k, m.arm_lm[k], forearm_opp) if m.arm_lm[k] != "rest" else rest
        w = np.clip(m.arm_w[k], 0.0, 1.0)[:, None]
        target = rest * (1 - w) + tgt * w + np.stack([s * m.arm_off[k, :, 0], m.arm_off[k, :, 1]], axis=1)
        elbows[k], hands[k] = _ik(shoulders[k], target, p.upper_arm, p.forearm, s)

    # ---- camera ----
    ppu = size * p.cam_scale / 3.1 * float(rng.uniform(0.97, 1.03))
    cx = size * (0.5 + p.cam_dx + rng.normal(0, 0.008))
    cy = size * (0.5 + p.cam_dy + rng.normal(0, 0.008))
    croll = p.cam_roll + float(rng.normal(0, 0.01))
    cr, sr = math.cos(croll), math.sin(croll)

    def px(v: F64) -> F64:
        x, y = v[:, 0], v[:, 1] + 0.43
        out: F64 = np.stack([cx + ppu * (cr * x - sr * y), cy + ppu * (sr * x + cr * y)], axis=1)
        return out

    def pr(r: float | F64) -> F64:
        return np.asarray(r, dtype=np.float64) * ppu

    # ---- static layer: wall, floor, chair ----
    base = np.empty((1, size, size, 3), dtype=np.float32)
    g = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    base[0] = (1 - g) * np.asarray(p.wall_top, dtype=np.float32) + g * np.asarray(p.wall_bottom, dtype=np.float32)
    floor_y = float(px(_vec(0.0, p.thigh + p.shin + 0.05, 1))[0, 1])
    if floor_y < size:
        base[0, max(0, int(floor_y)):, :, :] = np.asarray(p.floor, dtype=np.float32)
    st = _Canvas(base)
    one = 1

    def px1(x: float, y: float) -> F64:
        return px(_vec(x, y, one))

    ch = p.chair
    st.capsule(px1(0.0, -0.95), px1(0.0, -0.15), pr(0.4), ch)
    for s in _ARM_SIGN:
        st.capsule(px1(s * 0.45, 0.1), px1(s * 0.45, p.thigh + p.shin + 0.05), pr(0.035), _shade(ch, 0.7))
    st.capsule(px1(-0.5, 0.06), px1(0.5, 0.06), pr(0.08), _shade(ch, 0.85))

    img = np.repeat(base, T, axis=0)
    cv = _Canvas(img)
    sleeve = p.shirt if p.sleeve_long else p.skin
    ang_img = np.full(T, croll)

    def draw_arm(k: int) -> None:
        sh, el, hd = px(shoulders[k]), px(elbows[k]), px(hands[k])
        cv.capsule(sh, el, pr(p.arm_r), _shade(p.shirt, 0.92))
        cv.capsule(el, hd, pr(p.arm_r * 0.85), sleeve)
        fdir = hd - el
        fang = np.arctan2(fdir[:, 1], fdir[:, 0]) + m.finger_ang[k] * _ARM_SIGN[k]
        hr_ = pr(p.hand_r) * m.hand_open[k]
        if np.any(m.finger[k] > 0.01):
            flen = hr_ + m.finger[k] * pr(0.13)
            tip = hd + np.stack([np.cos(fang), np.sin(fang)], axis=1) * flen[:, None]
            cv.capsule(hd, tip, pr(0.028), _shade(p.skin, 0.93))
        cv.ellipse(hd, hr_ * 1.1, hr_ * 0.85, np.arctan2(fdir[:, 1], fdir[:, 0]), _shade(p.skin, 0.97))

    order = list(m.arm_order)
    for k in order:
        if m.arm_layer[k] == "back":
            draw_arm(k)
    leg_order = [0, 1] if m.leg_front != 0 else [1, 0]
    for k in leg_order:
        h, kn, ft = px(hips[k]), px(knees[k]), px(feet[k])
        cv.capsule(h, kn, pr(p.leg_r), p.trousers)
        cv.capsule(kn, ft, pr(p.leg_r * 0.8), _shade(p.trousers, 0.9))
        fl = pr(p.foot_len) * m.foot_scale[k]
        cv.ellipse(ft + _vec(0.0, 0.3 * ppu * p.foot_len, T), fl * 0.75, fl * 0.55 + 0.5, ang_img, p.shoes)
    tor_top = px(neck + up * (-0.12))
    cv.capsule(px(hip_c + up * (0.8 * p.torso_r)), tor_top, pr(p.torso_r) * (0.6 + 0.4 * width_k), p.shirt)
    cv.capsule(px(shoulders[0]), px(shoulders[1]), pr(0.11), p.shirt)
    cv.capsule(px(hips[0]), px(hips[1]), pr(p.leg_r * 1.15), _shade(p.trousers, 0.95))
    for k in order:
        if m.arm_layer[k] == "mid":
            draw_arm(k)
    cv.capsule(px(neck + up * -0.05), px(neck + up * (0.6 * p.neck_len)), pr(0.075), _shade(p.skin, 0.9))
    hc = px(head_c)
    cv.ellipse(hc, pr(hr), pr(1.1 * hr), head_ang + croll, p.hair)
    fc = px(face_c)
    frx = pr(0.8 * hr) * (1 - 0.3 * np.abs(np.sin(yaw_c)))
    fry = pr(0.85 * hr) * (1 - 0.25 * np.abs(np.clip(pitch, -1, 1)))
    cv.ellipse(fc, frx, fry, head_ang + croll, p.skin, alpha=face_vis)
    eye_vis = face_vis * np.clip(1.0 - 0.8 * np.clip(pitch - 0.4, 0, 1), 0, 1)
    for e in eyes:
        cv.ellipse(px(e), pr(0.1 * hr), pr(0.08 * hr) + 0.3, head_ang + croll, (0.08, 0.06, 0.06), alpha=eye_vis)
    if p.glasses:
        cv.capsule(px(eyes[0]), px(eyes[1]), pr(0.035 * hr) + 0.4, (0.15, 0.15, 0.18), alpha=0.8 * eye_vis)
    mw = 0.2 * hr * np.cos(yaw_c)
    mv = _rot(np.stack([mw, np.zeros(T)], axis=1), head_ang)
    cv.capsule(px(mouth_c - mv), px(mouth_c + mv), pr(0.05 * hr) + 0.3, (0.55, 0.2, 0.2), alpha=face_vis)
    for k in order:
        if m.arm_layer[k] == "front":
            draw_arm(k)
    if m.obj:
        oc = px(0.5 * (hands[0] + hands[1]) + _vec(0.0, -0.04, T))
        cv.ellipse(oc, pr(0.11), pr(0.06), 0.5 * ctx.osc(1.5, 0.3), (0.9, 0.75, 0.1))

    sigma = p.noise * float(rng.uniform(0.8, 1.2))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    out: U8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Encoding, splits, orchestration
# --------------------------------------------------------------------------------------------


def _rgb_to_yuv420p(video: U8) -> U8:
    """BT.601 limited-range RGB -> planar yuv420p, shape (T, H*3/2, W), in plain numpy.

    Done here rather than by libswscale because swscale's SIMD paths made the encoded bytes
    depend on buffer alignment (intermittently different files for the same frames).
    """
    T, H, W, _ = video.shape
    rgb = video.astype(np.float32) / np.float32(255.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b

    def sub(c: F32) -> F32:
        out: F32 = (c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2]) * np.float32(0.25)
        return out

    out = np.empty((T, H * 3 // 2, W), dtype=np.uint8)
    out[:, :H] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    out[:, H:H + H // 4] = np.clip(np.rint(sub(cb)), 0, 255).astype(np.uint8).reshape(T, H // 4, W)
    out[:, H + H // 4:] = np.clip(np.rint(sub(cr)), 0, 255).astype(np.uint8).reshape(T, H // 4, W)
    return out


def _encode(path: Path, video: U8, fps: int) -> None:
    """Write an H.264 (libx264, yuv420p) mp4, byte-identical for identical input.

    Determinism needs one thread AND ``mbtree=0``: with macroblock-tree rate control this
    libx264 build produced different bitstreams for the same frames depending on heap contents.
    """
    T, H, W, _ = video.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        options = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width = W
        stream.height = H
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        yuv = _rgb_to_yuv420p(video)
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(yuv[i], format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@dataclass(frozen=True)
class _ClipJob:
    path: str
    person: PersonAttrs
    label: int
    frames: int
    size: int
    fps: int
    clip_seed: int


def _run_job(job: _ClipJob) -> str:
    video = render_clip(job.person, job.label, job.frames, job.size, job.clip_seed)
    _encode(Path(job.path), video, job.fps)
    return job.path


@dataclass(frozen=True)
class SynthInfo:
    """What :func:`generate` wrote."""

    out: Path
    classes: tuple[int, ...]
    persons: tuple[str, ...]
    counts: dict[str, int]
    cross_subject_train_persons: tuple[str, ...]
    cross_subject_val_persons: tuple[str, ...]


@dataclass(frozen=True)
class _Clip:
    person: int
    clip_no: int
    label: int
    split: str

    @property
    def name(self) -> str:
        return f"{self.person:04d}_{_ACTION_TO_BODY[self.label]:02d}_{self.clip_no:04d}.mp4"


def _plan(persons: int, clips_per_person: int, classes: Sequence[int], seed: int) -> list[_Clip]:
    """Assign labels and official-like splits to every clip (class-stratified per person)."""
    pattern = ("train", "val", "train", "test")
    clips: list[_Clip] = []
    for pid in range(1, persons + 1):
        r = np.random.default_rng([seed, 3, pid])
        order = [int(c) for c in r.permutation(np.asarray(classes))]
        labels = [order[i % len(order)] for i in range(clips_per_person)]
        # stratify: walk clips grouped by class, dealing train/val/train/test
        by_class = sorted(range(clips_per_person), key=lambda i: (classes.index(labels[i]), i))
        split_of: dict[int, str] = {}
        for j, i in enumerate(by_class):
            # any 4 consecutive pattern entries hold train, val and test; fewer clips: train, val, test
            split_of[i] = pattern[(j + pid) % len(pattern)] if clips_per_person >= 4 else ("train", "val", "test")[j]
        for i in range(clips_per_person):
            clips.append(_Clip(pid, i + 1, labels[i], split_of[i]))
    return clips


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as e:  # file systems without hard links: fall back to a copy, loudly
        warnings.warn(f"hard link {dst} failed ({e}); copying instead", RuntimeWarning, stacklevel=2)
        shutil.copy2(src, dst)


def _iter_results(jobs: list[_ClipJob], workers: int) -> Iterator[str]:
    if workers <= 1:
        for job in jobs:
            yield _run_job(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as ex:
        yield from ex.map(_run_job, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8) or 1)))


def generate(
    out: Path,
    *,
    persons: int = 24,
    clips_per_person: int = 40,
    classes_per_body: int = 2,
    frames: int = 32,
    size: int = 112,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    fps: int = 15,
) -> SynthInfo:
    """Generate the synthetic MA-52 dataset into ``out`` (see the module docstring for the layout).

    ``out`` may exist but must not already contain a dataset. ``workers`` and ``progress`` do not
    affect the output. Raises ValueError for invalid parameters.
    """
    if not 2 <= persons <= 9999:
        raise ValueError(f"persons must be in 2..9999, got {persons}")
    if not 2 <= clips_per_person <= 9999:
        raise ValueError(f"clips_per_person must be in 2..9999, got {clips_per_person}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (yuv420p), got {size}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    classes = select_classes(classes_per_body)
    out = Path(out)
    if (out / "synth_meta.json").exists():
        raise ValueError(f"{out}: already holds a generated dataset")
    for sub in ("train", "val", "test", "cross_subject/train", "cross_subject/val"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    people = [make_person(seed, pid) for pid in range(1, persons + 1)]
    clips = _plan(persons, clips_per_person, classes, seed)
    jobs = [
        _ClipJob(str(out / c.split / c.name), people[c.person - 1], c.label, frames, size, fps,
                 int(np.random.default_rng([seed, 2, c.person, c.clip_no]).integers(0, 2**63 - 1)))
        for c in clips
    ]

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("synthetic MA-52", total=len(jobs))
            for _ in _iter_results(jobs, workers):
                bar.advance(task)
    else:
        for _ in _iter_results(jobs, workers):
            pass

    counts: dict[str, int] = {}
    for split in ("train", "val", "test"):
        sel = [c for c in clips if c.split == split]
        (out / f"{split}_list_videos.txt").write_bytes(_crlf([f"{c.name} {c.label}" for c in sel]))
        counts[split] = len(sel)

    # cross-subject: person-disjoint, self-contained root with hard links
    r = np.random.default_rng([seed, 4])
    pids = [int(x) for x in r.permutation(np.arange(1, persons + 1))]
    n_val = max(1, round(persons / 3))
    val_p = sorted(pids[:n_val])
    train_p = sorted(pids[n_val:])
    cs = out / "cross_subject"
    for split, members in (("train", set(train_p)), ("val", set(val_p))):
        sel = [c for c in clips if c.person in members]
        for c in sel:
            _link(out / c.split / c.name, cs / split / c.name)
        (cs / f"{split}_list_videos.txt").write_bytes(_crlf([f"{c.name} {c.label}" for c in sel]))
        counts[f"cross_subject_{split}"] = len(sel)
    label_bytes = _crlf([f"{i}\t{n}" for i, n in enumerate(_ACTION_NAMES)])
    (out / "label_name.txt").write_bytes(label_bytes)
    (cs / "label_name.txt").write_bytes(label_bytes)

    meta: dict[str, Any] = {
        "generator": "piumr.data.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "params": {"persons": persons, "clips_per_person": clips_per_person,
                   "classes_per_body": classes_per_body, "frames": frames, "size": size, "fps": fps},
        "classes": [{"label": c, "name": _ACTION_NAMES[c], "body": _ACTION_TO_BODY[c]} for c in classes],
        "counts": counts,
        "cross_subject": {"train_persons": [f"{x:04d}" for x in train_p],
                          "val_persons": [f"{x:04d}" for x in val_p]},
        "test_naming": "PPPP_BB_NNNN.mp4 with true labels",
        "persons": [dict(asdict(pp), id=f"{pp.pid:04d}") for pp in people],
    }
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return SynthInfo(
        out=out,
        classes=classes,
        persons=tuple(f"{x:04d}" for x in range(1, persons + 1)),
        counts=counts,
        cross_subject_train_persons=tuple(f"{x:04d}" for x in train_p),
        cross_subject_val_persons=tuple(f"{x:04d}" for x in val_p),
    )


_OUTPUT_PARAMS = ("persons", "clips_per_person", "classes_per_body", "frames", "size", "seed", "fps")
_RUN_PARAMS = ("workers", "progress")


def synth_key(**params: Any) -> str:
    """Cache directory name for these generation parameters (defaults filled in)."""
    defaults: dict[str, Any] = {"persons": 24, "clips_per_person": 40, "classes_per_body": 2,
                                "frames": 32, "size": 112, "seed": 0, "fps": 15}
    unknown = set(params) - set(_OUTPUT_PARAMS) - set(_RUN_PARAMS)
    if unknown:
        raise TypeError(f"unknown synth parameters: {sorted(unknown)}")
    full = {k: int(params.get(k, defaults[k])) for k in _OUTPUT_PARAMS}
    blob = json.dumps({"version": GENERATOR_VERSION, **full}, sort_keys=True).encode()
    return f"synth-v{GENERATOR_VERSION}-{hashlib.sha256(blob).hexdigest()[:16]}"


def ensure_synth(cache_dir: Path, **params: Any) -> Path:
    """Return the dataset directory for ``params`` under ``cache_dir``, generating it if absent.

    Generation happens in a temporary sibling directory that is renamed into place only once
    complete, so an interrupted run never leaves a half dataset under the final name (stale
    ``.tmp-*`` directories may remain and can be deleted). If another process finishes first,
    its copy is used.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / synth_key(**params)
    if (final / "synth_meta.json").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=cache_dir))
    try:
        generate(tmp, **params)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "synth_meta.json").is_file():
                raise
            # a concurrent generator won the race; its dataset is identical
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final
