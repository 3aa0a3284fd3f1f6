"""The 52 MA-52 classes as motions (one function per class, registered in ``_MOTIONS``) and the
classes generated for ``classes_per_body``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from piumr.data.synth.motions import _Ctx, _Motion


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


def select_classes(classes_per_body: int) -> tuple[int, ...]:
    """Sorted action labels generated for ``classes_per_body`` (min(n, group size) per group)."""
    if classes_per_body < 1:
        raise ValueError(f"classes_per_body must be >= 1, got {classes_per_body}")
    chosen = [c for group in _PRIORITY for c in group[:classes_per_body]]
    return tuple(sorted(chosen))


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
