"""Task v2: classes that differ only in time. Each of the 7 body parts has 3 classes that move the
same part to the same place and differ by repetition, order or rhythm:

- ``once``: out, hold, back (one bump);
- ``twice``: two quicker bumps (repetition);
- ``stay``: out and hold to the end of the clip (order: the return never comes).

Any single frame of one class can also be a frame of the other two (every class passes through the
rest and the reached pose), so the action level needs time while the body level (which part moves)
is spatial. Labels are MA-52 indices: the first three classes of each body group in
``actions._PRIORITY``, so the 52 -> 7 body mapping holds; :data:`V2_NAMES` names what each label
shows in task v2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from piumr.data.synth.actions import _PRIORITY
from piumr.data.synth.geometry import F64
from piumr.data.synth.motions import _Ctx, _Motion

__all__ = ["GENERATOR_VERSION_V2", "PATTERNS", "PARTS", "V2_CLASSES", "V2_NAMES", "v2_motion"]

#: the generator version of task v2 (the mp4 set of ``generation.generate(task=2)`` and the shift suite's clips)
GENERATOR_VERSION_V2 = "2"

PATTERNS: tuple[str, ...] = ("once", "twice", "stay")
PARTS: tuple[str, ...] = ("torso bows", "head bows", "hand rises", "legs spread", "hand to chest",
                          "hand to cheek", "hand to knee")
#: task-v2 label -> (body part index 0..6, pattern index 0..2)
V2_CLASSES: dict[int, tuple[int, int]] = {lab: (g, k) for g, group in enumerate(_PRIORITY)
                                          for k, lab in enumerate(group[:len(PATTERNS)])}
V2_NAMES: dict[int, str] = {lab: f"{PARTS[g]}: {PATTERNS[k]}" for lab, (g, k) in V2_CLASSES.items()}

# base durations in clip units at tempo 1 (a person's tempo divides them)
_RISE, _HOLD, _GAP = 0.12, 0.1, 0.08


def _bumps(c: _Ctx, n: int, stay: bool, hold: float = 1.0) -> F64:
    """Weight curve (T,) in [0, 1]: ``n`` bumps (rise, hold, fall), or one rise held to the end.

    Durations follow the person's tempo; ``hold`` (the person's rhythm) scales the holds and gaps. They are
    compressed to fit 95 % of the clip; the onset is random."""
    r, h, g = _RISE / c.tempo, _HOLD * hold / c.tempo, _GAP * hold / c.tempo
    total = (r + h + 0.05) if stay else n * (2 * r + h) + (n - 1) * g
    if total > 0.95:
        k = 0.95 / total
        r, h, g, total = r * k, h * k, g * k, 0.95
    start = float(c.rng.uniform(0.0, 0.98 - total))
    w = np.zeros_like(c.t)
    for i in range(n):
        s = start + i * (2 * r + h + g)
        up = c._ease((c.t - s) / r)
        w = np.maximum(w, up if stay else up * (1 - c._ease((c.t - s - r - h) / r)))
    out: F64 = w + 0.25 * c._tremor() * w * (1 - w) * 4
    return out


def _apply(part: int, c: _Ctx, m: _Motion, w: F64) -> None:
    """Move body part ``part`` by weight ``w`` (T,) with the person's amplitude."""
    a = c.amp
    if part == 0:
        m.fwd += min(0.8, 0.5 * a) * w
        m.pitch += 0.25 * w
    elif part == 1:
        m.pitch += min(0.9, 0.6 * a) * w
    elif part == 2:
        m.reach(c.active, "wave", w, dx=0.04 * a * w)
        m.hand_open[c.active] = 1 + 0.3 * w
    elif part == 3:
        for k in (0, 1):
            m.knee_off[k, :, 0] += 0.22 * a * w
            m.foot_off[k, :, 0] += 0.15 * a * w
    else:
        lm = {4: "chest", 5: "cheek", 6: "knee_own"}[part]
        m.reach(c.active, lm, w, dx=0.03 * (a - 1) * w)


def v2_motion(label: int, hold: float = 1.0) -> Callable[[_Ctx, _Motion], None]:
    """The motion function of task-v2 class ``label`` for a person whose holds and gaps last ``hold`` times the
    base (raises ``KeyError`` for a label task v2 lacks)."""
    part, pattern = V2_CLASSES[label]

    def motion(c: _Ctx, m: _Motion) -> None:
        w = _bumps(c, 2 if pattern == 1 else 1, stay=pattern == 2, hold=hold)
        _apply(part, c, m, w)

    return motion
