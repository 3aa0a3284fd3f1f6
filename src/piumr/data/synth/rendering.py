"""Rendering: a soft-edged rasteriser (capsules and ellipses, vectorised over frames inside a bounding
box) and ``render_clip``, one clip as uint8 (T, size, size, 3)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from piumr.data.synth.actions import _MOTIONS
from piumr.data.synth.geometry import F32, F64, U8, _rot, _vec
from piumr.data.synth.motions import _ARM_SIGN, _Ctx, _Motion
from piumr.data.synth.persons import RGB, PersonAttrs
from piumr.data.synth.skeleton import _Pose, _pose


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


class _Camera:
    """Body units -> pixels: scale, offset and roll of one clip (draws 4 numbers from ``rng``)."""

    def __init__(self, p: PersonAttrs, size: int, rng: np.random.Generator) -> None:
        self.ppu = size * p.cam_scale / 3.1 * float(rng.uniform(0.97, 1.03))
        self.cx = size * (0.5 + p.cam_dx + rng.normal(0, 0.008))
        self.cy = size * (0.5 + p.cam_dy + rng.normal(0, 0.008))
        self.roll = p.cam_roll + float(rng.normal(0, 0.01))
        self.cr, self.sr = math.cos(self.roll), math.sin(self.roll)

    def px(self, v: F64) -> F64:
        """(T, 2) body points -> (T, 2) pixel coordinates."""
        x, y = v[:, 0], v[:, 1] + 0.43
        out: F64 = np.stack([self.cx + self.ppu * (self.cr * x - self.sr * y),
                             self.cy + self.ppu * (self.sr * x + self.cr * y)], axis=1)
        return out

    def pr(self, r: float | F64) -> F64:
        """Body-unit radius (scalar or (T,)) -> pixels."""
        return np.asarray(r, dtype=np.float64) * self.ppu


def _static_layer(p: PersonAttrs, cam: _Camera, size: int) -> F32:
    """Wall gradient, floor and chair: (1, size, size, 3) float32, the same in every frame."""
    base = np.empty((1, size, size, 3), dtype=np.float32)
    g = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    base[0] = (1 - g) * np.asarray(p.wall_top, dtype=np.float32) + g * np.asarray(p.wall_bottom, dtype=np.float32)
    floor_y = float(cam.px(_vec(0.0, p.thigh + p.shin + 0.05, 1))[0, 1])
    if floor_y < size:
        base[0, max(0, int(floor_y)):, :, :] = np.asarray(p.floor, dtype=np.float32)
    st = _Canvas(base)

    def px1(x: float, y: float) -> F64:
        return cam.px(_vec(x, y, 1))

    ch = p.chair
    st.capsule(px1(0.0, -0.95), px1(0.0, -0.15), cam.pr(0.4), ch)
    for s in _ARM_SIGN:
        st.capsule(px1(s * 0.45, 0.1), px1(s * 0.45, p.thigh + p.shin + 0.05), cam.pr(0.035), _shade(ch, 0.7))
    st.capsule(px1(-0.5, 0.06), px1(0.5, 0.06), cam.pr(0.08), _shade(ch, 0.85))
    return base


def _draw_arm(cv: _Canvas, pose: _Pose, p: PersonAttrs, m: _Motion, cam: _Camera, k: int) -> None:
    """Upper arm, forearm (sleeve), optional pointing finger and hand of arm ``k``."""
    px, pr = cam.px, cam.pr
    sleeve = p.shirt if p.sleeve_long else p.skin
    sh, el, hd = px(pose.shoulders[k]), px(pose.elbows[k]), px(pose.hands[k])
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


def _draw_legs_and_torso(cv: _Canvas, pose: _Pose, p: PersonAttrs, m: _Motion, cam: _Camera) -> None:
    """Legs (front leg last), feet, torso, shoulder line and pelvis."""
    px, pr, T = cam.px, cam.pr, pose.T
    ang_img = np.full(T, cam.roll)
    for k in ([0, 1] if m.leg_front != 0 else [1, 0]):
        h, kn, ft = px(pose.hips[k]), px(pose.knees[k]), px(pose.feet[k])
        cv.capsule(h, kn, pr(p.leg_r), p.trousers)
        cv.capsule(kn, ft, pr(p.leg_r * 0.8), _shade(p.trousers, 0.9))
        fl = pr(p.foot_len) * m.foot_scale[k]
        cv.ellipse(ft + _vec(0.0, 0.3 * cam.ppu * p.foot_len, T), fl * 0.75, fl * 0.55 + 0.5, ang_img, p.shoes)
    tor_top = px(pose.neck + pose.up * (-0.12))
    cv.capsule(px(pose.hip_c + pose.up * (0.8 * p.torso_r)), tor_top, pr(p.torso_r) * (0.6 + 0.4 * pose.width_k),
               p.shirt)
    cv.capsule(px(pose.shoulders[0]), px(pose.shoulders[1]), pr(0.11), p.shirt)
    cv.capsule(px(pose.hips[0]), px(pose.hips[1]), pr(p.leg_r * 1.15), _shade(p.trousers, 0.95))


def _draw_head(cv: _Canvas, pose: _Pose, p: PersonAttrs, cam: _Camera) -> None:
    """Neck, hair, face, eyes, glasses and mouth (face parts fade as the head turns away)."""
    px, pr, hr, T = cam.px, cam.pr, pose.hr, pose.T
    ang = pose.head_ang + cam.roll
    cv.capsule(px(pose.neck + pose.up * -0.05), px(pose.neck + pose.up * (0.6 * p.neck_len)), pr(0.075),
               _shade(p.skin, 0.9))
    cv.ellipse(px(pose.head_c), pr(hr), pr(1.1 * hr), ang, p.hair)
    frx = pr(0.8 * hr) * (1 - 0.3 * np.abs(np.sin(pose.yaw_c)))
    fry = pr(0.85 * hr) * (1 - 0.25 * np.abs(np.clip(pose.pitch, -1, 1)))
    cv.ellipse(px(pose.face_c), frx, fry, ang, p.skin, alpha=pose.face_vis)
    eye_vis = pose.face_vis * np.clip(1.0 - 0.8 * np.clip(pose.pitch - 0.4, 0, 1), 0, 1)
    for e in pose.eyes:
        cv.ellipse(px(e), pr(0.1 * hr), pr(0.08 * hr) + 0.3, ang, (0.08, 0.06, 0.06), alpha=eye_vis)
    if p.glasses:
        cv.capsule(px(pose.eyes[0]), px(pose.eyes[1]), pr(0.035 * hr) + 0.4, (0.15, 0.15, 0.18), alpha=0.8 * eye_vis)
    mw = 0.2 * hr * np.cos(pose.yaw_c)
    mv = _rot(np.stack([mw, np.zeros(T)], axis=1), pose.head_ang)
    cv.capsule(px(pose.mouth_c - mv), px(pose.mouth_c + mv), pr(0.05 * hr) + 0.3, (0.55, 0.2, 0.2), alpha=pose.face_vis)


def render_clip(person: PersonAttrs, label: int, frames: int, size: int, clip_seed: int,
                motion: Callable[[_Ctx, _Motion], None] | None = None) -> U8:
    """Render one clip of ``label`` performed by ``person``: uint8 array (T, size, size, 3).

    ``motion`` replaces the class's task-v1 motion (task v2 passes its own). Every random number
    comes from ``clip_seed`` in a fixed order: the class motion, the idle breathing, the camera, the
    sensor noise.
    """
    p = person
    rng = np.random.default_rng(clip_seed)
    ctx = _Ctx(p, frames, rng)
    m = _Motion(frames)
    (motion or _MOTIONS[label])(ctx, m)
    pose = _pose(p, m, ctx.t, rng, ctx.active)
    cam = _Camera(p, size, rng)
    img = np.repeat(_static_layer(p, cam, size), frames, axis=0)
    cv = _Canvas(img)
    # painter's order: arms behind the body, legs, torso, arms at mid depth, head, arms in front
    for layer in ("back", "body", "mid", "head", "front"):
        if layer == "body":
            _draw_legs_and_torso(cv, pose, p, m, cam)
        elif layer == "head":
            _draw_head(cv, pose, p, cam)
        else:
            for k in m.arm_order:
                if m.arm_layer[k] == layer:
                    _draw_arm(cv, pose, p, m, cam, k)
    if m.obj:
        oc = cam.px(0.5 * (pose.hands[0] + pose.hands[1]) + _vec(0.0, -0.04, frames))
        cv.ellipse(oc, cam.pr(0.11), cam.pr(0.06), 0.5 * ctx.osc(1.5, 0.3), (0.9, 0.75, 0.1))
    sigma = p.noise * float(rng.uniform(0.8, 1.2))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    out: U8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out
