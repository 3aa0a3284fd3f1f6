"""Skeleton geometry shared by the motions and the renderer: per-frame 2-D rotations, vectors and
two-link inverse kinematics. Arrays are (T, 2) image coordinates (x right, y down), one row per frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

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
