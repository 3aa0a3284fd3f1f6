"""Rendering: a soft-edged rasteriser (capsules and ellipses, vectorised over frames inside a bounding
box) and ``render_clip``, one clip as uint8 (T, size, size, 3)."""

from __future__ import annotations

import math

import numpy as np

from piumr.data.synth.actions import _MOTIONS
from piumr.data.synth.geometry import F32, F64, U8, _ik, _rot, _vec
from piumr.data.synth.motions import _ARM_SIGN, _Ctx, _Motion
from piumr.data.synth.persons import RGB, PersonAttrs


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
