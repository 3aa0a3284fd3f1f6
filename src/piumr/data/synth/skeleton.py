"""The figure's skeleton for one clip: joints from the person's resting posture and the motion curves.

Every point is a (T, 2) array in body units (x right, y down, hip centre at the origin); the
camera (``rendering``) maps them to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from piumr.data.synth.geometry import F64, _ik, _rot, _vec
from piumr.data.synth.motions import _ARM_SIGN, _Motion
from piumr.data.synth.persons import PersonAttrs

__all__ = ["_Pose", "_pose"]


@dataclass
class _Pose:
    """Joints (T, 2) and per-frame angles (T,) of one clip; ``[k]`` lists are per side (``_ARM_SIGN``)."""

    T: int
    hip_c: F64
    up: F64  # torso direction (unit, (T, 2))
    perp: F64  # across the torso (unit, (T, 2))
    tl: F64  # torso length (T,)
    neck: F64
    width_k: F64  # apparent shoulder width factor from the body yaw (T,)
    shoulders: list[F64]
    hips: list[F64]
    head_ang: F64
    head_c: F64
    hr: float  # head radius
    yaw_c: F64  # clamped head yaw (T,)
    pitch: F64  # head pitch (T,)
    face_c: F64
    face_vis: F64  # face visibility 0..1 (T,)
    eyes: list[F64]
    mouth_c: F64
    knees: list[F64] = field(default_factory=list)
    feet: list[F64] = field(default_factory=list)
    elbows: list[F64] = field(default_factory=list)
    hands: list[F64] = field(default_factory=list)


def _torso_and_head(p: PersonAttrs, m: _Motion, breath: F64) -> _Pose:
    """Resting posture + motion curves + idle breathing -> torso, shoulders, hips and head joints."""
    T = m.T
    lean = p.rest_lean + m.lean
    fwd = np.clip(p.slouch + m.fwd, 0.0, 1.0)
    pitch = np.clip(p.rest_pitch + m.pitch + 0.3 * fwd, -0.9, 1.0)
    roll = p.rest_roll + m.roll
    hyaw = m.hyaw + 1.1 * m.yaw
    yaw = m.yaw
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
    return _Pose(T, hip_c, up, perp, tl, neck, width_k, shoulders, hips, head_ang, head_c, hr, yaw_c, pitch,
                 face_c, face_vis, eyes, mouth_c)


def _legs(pose: _Pose, p: PersonAttrs, m: _Motion) -> None:
    """Knees and feet from the person's proportions and the motion's offsets."""
    T = pose.T
    for k, s in enumerate(_ARM_SIGN):
        kn = _vec(s * p.knee_w + s * m.knee_off[k, :, 0], p.thigh + m.knee_off[k, :, 1], T)
        ft = kn + _vec(s * 0.02 + s * (m.foot_off[k, :, 0] - m.knee_off[k, :, 0]),
                       p.shin + m.foot_off[k, :, 1] - m.knee_off[k, :, 1], T)
        pose.knees.append(kn)
        pose.feet.append(ft)


def _landmark(pose: _Pose, p: PersonAttrs, m: _Motion, k: int, name: str, forearm_opp: F64) -> F64:
    """Where hand ``k`` goes for the landmark ``name`` (T, 2)."""
    T, s, hr = pose.T, _ARM_SIGN[k], pose.hr
    if name == "rest":
        if p.hands_on_lap:
            return _vec(s * 0.1, 0.5 * p.thigh - 0.06, T)
        return 0.55 * pose.hips[k] + 0.45 * pose.knees[k] + _vec(0.0, -0.08, T)
    neck, up, perp, tl = pose.neck, pose.up, pose.perp, pose.tl
    head_c, face_c, head_ang = pose.head_c, pose.face_c, pose.head_ang
    table: dict[str, F64] = {
        "lap": _vec(s * 0.08, 0.4 * p.thigh - 0.05, T),
        "belly": pose.hip_c + up * (0.35 * tl)[:, None] + _vec(0.0, 0.0, T),
        "center": neck + up * (-0.38 * tl)[:, None],
        "chest": neck + up * (-0.3 * tl)[:, None],
        "gesture": neck + up * (-0.5 * tl)[:, None] + perp * (s * 0.35),
        "above": head_c + _vec(s * 0.45, -0.5 - hr, T),
        "side_out": pose.shoulders[k] + _vec(s * (p.upper_arm + p.forearm) * 0.8, 0.05, T),
        "wave": pose.shoulders[k] + _vec(s * 0.3, -0.55, T),
        "forearm_opp": forearm_opp,
        "neck": neck + up * (0.05 + 0.3 * p.neck_len) + perp * (s * 0.08),
        "back": pose.shoulders[k] + _vec(-s * 0.22, 0.45, T),
        "shoulder_opp": pose.shoulders[1 - k] + _vec(0.0, 0.06, T),
        "hip_own": pose.hips[k] + _vec(s * 0.1, -0.12, T) - _vec(0.0, m.rise * 0.4, T),
        "cross": neck + up * (-0.42 * tl)[:, None] + perp * (-s * 0.32),
        "crown": head_c + _rot(_vec(s * 0.5 * hr, -0.95 * hr, T), head_ang),
        "hindbrain": head_c + _rot(_vec(s * 0.35 * hr, -0.3 * hr, T), head_ang),
        "forehead": face_c + _rot(_vec(0.0, -0.55 * hr, T), head_ang),
        "cheek": face_c + _rot(_vec(s * 0.5 * hr, 0.2 * hr, T), head_ang),
        "eye": pose.eyes[1 if s > 0 else 0] + _vec(s * 0.03, 0.02, T),
        "nose": face_c + _rot(_vec(0.0, 0.12 * hr, T), head_ang),
        "ear": head_c + _rot(_vec(s * 1.0 * hr, 0.05 * hr, T), head_ang),
        "face_half": face_c + _rot(_vec(s * 0.35 * hr, 0.0, T), head_ang),
        "mouth": pose.mouth_c,
        "bridge": face_c + _rot(_vec(0.0, -0.05 * hr, T), head_ang),
        "thigh_own": 0.6 * pose.hips[k] + 0.4 * pose.knees[k] + _vec(0.0, -0.05, T),
        "knee_own": pose.knees[k] + _vec(0.0, -0.04, T),
        "foot_own": pose.feet[k] + _vec(0.0, -0.1, T),
    }
    return table[name]


def _arms(pose: _Pose, p: PersonAttrs, m: _Motion, active: int) -> None:
    """Elbows and hands by two-link IK towards each arm's landmark (blended from rest by ``arm_w``)."""
    T = pose.T
    pose.elbows = [np.zeros((T, 2)), np.zeros((T, 2))]
    pose.hands = [np.zeros((T, 2)), np.zeros((T, 2))]
    for k in (1 - active, active):  # the passive arm first: its forearm is a landmark
        s = _ARM_SIGN[k]
        other = 1 - k
        forearm_opp = 0.5 * (pose.elbows[other] + pose.hands[other]) if k == active else _vec(0.0, 0.0, T)
        rest = _landmark(pose, p, m, k, "rest", forearm_opp) + _vec(0.0, 0.0, T)
        tgt = _landmark(pose, p, m, k, m.arm_lm[k], forearm_opp) if m.arm_lm[k] != "rest" else rest
        w = np.clip(m.arm_w[k], 0.0, 1.0)[:, None]
        target = rest * (1 - w) + tgt * w + np.stack([s * m.arm_off[k, :, 0], m.arm_off[k, :, 1]], axis=1)
        pose.elbows[k], pose.hands[k] = _ik(pose.shoulders[k], target, p.upper_arm, p.forearm, s)


def _pose(p: PersonAttrs, m: _Motion, t: F64, rng: np.random.Generator, active: int) -> _Pose:
    """The whole skeleton of one clip; draws the idle breathing (2 numbers) from ``rng``."""
    breath = 0.012 * np.sin(2 * np.pi * (rng.uniform(0.3, 0.8) * t + rng.uniform()))
    pose = _torso_and_head(p, m, breath)
    _legs(pose, p, m)
    _arms(pose, p, m, active)
    return pose
