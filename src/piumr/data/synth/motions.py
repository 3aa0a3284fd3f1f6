"""Motion curves: the per-clip time base and person style (``_Ctx``) and the channel curves a class
motion writes (``_Motion``, arrays of length T)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from piumr.data.synth.geometry import F64
from piumr.data.synth.persons import PersonAttrs


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
