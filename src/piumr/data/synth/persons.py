"""Participants: the fixed per-person attributes (body, style, clothing, camera) drawn from a seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
