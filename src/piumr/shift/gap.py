"""The person-gap demo (README command 1): one factor of the person-shift suite, its baseline, PIUmr and the best
domain-generalisation baseline of the suite's leaderboard, trained on a few paired seeds by the suite's own code
(``piumr.shift.suite.run_suite``), then scored on the training persons' held-back clips (seen) and on persons the
factor shifts (unseen).

Per method it reports seen and unseen action Top-1, the person gap (seen - unseen) and the difference to the
baseline on unseen persons, each with two 95 % intervals: the crossed seed x person bootstrap (as the suite) and the
t interval over the per-seed values; a direction is stated only where both exclude 0. The recipe is chaotic, so a
run on another CPU gives other per-run numbers: ``another_cpu`` is the interval that the mean of a rerun of the same
number of seeds should land in (t prediction interval for a new mean, ``mean +- t * s * sqrt(2 / n)``), seed-to-seed
variation standing in for machine-to-machine variation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from piumr.files import atomic_write, write_json_atomic, write_text_atomic
from piumr.runtime import cpu_identity
from piumr.shift.arms import arm_spec
from piumr.shift.report import CHANCE, _commit
from piumr.shift.stats import Cells, cells, crossed_bootstrap, seed_t_interval
from piumr.shift.suite import SuiteSettings, load_runs, timestamp

__all__ = ["GAP_FACTOR", "GAP_ARMS", "GAP_SEEDS", "analyse_gap", "gap_settings", "write_gap_report"]

#: the factor with the clearest gap in the suite's calibration (baseline 39.5 % unseen, ~29 points below seen)
GAP_FACTOR = "tempo"
#: baseline, PIUmr and the domain-generalisation baseline with the highest unseen Top-1 on ``GAP_FACTOR`` in the
#: committed suite (``artifacts/shift-suite/summary.json``; tests/test_gap_demo.py checks that it still is)
GAP_ARMS: tuple[str, ...] = ("baseline", "piumr", "coral")
GAP_SEEDS: tuple[int, ...] = (0, 1, 2)
#: the demo's validity lines: a person gap of at least this many points, every row at least this many x chance
MIN_GAP, MIN_CHANCE_MULTIPLE = 10.0, 3.0


def gap_settings(factor: str = GAP_FACTOR, seeds: Sequence[int] = GAP_SEEDS, arms: Sequence[str] = GAP_ARMS,
                 **kw: Any) -> SuiteSettings:
    """The suite's settings of the demo: ``arms`` x ``seeds`` with the suite's recipe (``kw`` overrides other
    fields), each training scoring the held-out persons of ``factor`` only (``score_all`` off)."""
    return SuiteSettings(seeds=tuple(seeds), factors=(factor,), arms=tuple(arms), score_all=False, **kw)


def _pairs(runs: dict[int, dict[str, Any]], part: str, seeds: Sequence[int]) -> dict[int, tuple[list[int], list[int]]]:
    return {s: (runs[s][part]["action"], runs[s][part]["person"]) for s in seeds}


def _zeros(p: dict[int, tuple[list[int], list[int]]]) -> dict[int, tuple[list[int], list[int]]]:
    return {s: ([0] * len(c), persons) for s, (c, persons) in p.items()}


def _t(per_seed: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float, float]:
    """(mean, t lo, t hi, another-CPU lo, hi) in points from per-seed values in [0, 1]; nan bounds with one seed."""
    m, n = float(per_seed.mean()), len(per_seed)
    if n < 2:
        nan = float("nan")
        return 100 * m, nan, nan, nan, nan
    q, s = float(stats.t.ppf(0.5 + level / 2, n - 1)), float(per_seed.std(ddof=1))
    ci, pi = q * s / np.sqrt(n), q * s * np.sqrt(2.0 / n)
    return 100 * m, 100 * (m - ci), 100 * (m + ci), 100 * (m - pi), 100 * (m + pi)


def _interval(c: Cells, reps: int) -> dict[str, Any]:
    """``c``'s mean difference with its crossed-bootstrap, seed-t and another-CPU intervals (points)."""
    boot = crossed_bootstrap(c, reps=reps)
    per_seed = c.diff_sum.sum(axis=1) / np.maximum(c.n.sum(axis=1), 1)
    m, lo, hi, plo, phi = _t(per_seed)
    assert abs(m - seed_t_interval(c)[0]) < 1e-9
    return {"value": round(boot.diff, 2), "ci": [round(boot.lo, 2), round(boot.hi, 2)],
            "t_ci": [round(lo, 2), round(hi, 2)], "another_cpu": [round(plo, 2), round(phi, 2)],
            "per_seed": [round(100 * float(v), 2) for v in per_seed]}


def _direction(d: dict[str, Any], up: str, down: str) -> str:
    """``up`` / ``down`` where both 95 % intervals exclude 0 on that side, else "not resolved (+-h)"."""
    lo, hi = max(d["ci"][0], d["t_ci"][0]), min(d["ci"][1], d["t_ci"][1])
    if lo > 0:
        return up
    if hi < 0:
        return down
    h = max(d["ci"][1] - d["ci"][0], d["t_ci"][1] - d["t_ci"][0]) / 2
    return f"not resolved (+-{h:.1f})"


def analyse_gap(out: Path, factor: str = GAP_FACTOR, arms: Sequence[str] = GAP_ARMS, reps: int = 2000) -> dict[str, Any]:
    """Rows per arm from the suite run files under ``out`` (the seeds every arm has): ``seen``, ``unseen`` (their
    Top-1 with intervals), ``gap`` (seen - unseen; seen and unseen are other persons, so its interval is over seeds
    only: ``ci`` = ``t_ci``), ``diff`` (unseen, arm - baseline; absent for the baseline) and their directions.
    Raises ``ValueError`` when an arm has no run or the arms share no seed."""
    runs = load_runs(out, (factor,)).get(factor, {})
    missing = [a for a in arms if a not in runs]
    if missing:
        raise ValueError(f"{out}: no {factor} runs of {', '.join(missing)}")
    seeds = sorted(set.intersection(*(set(runs[a]) for a in arms)))
    if not seeds:
        raise ValueError(f"{out}: the arms {', '.join(arms)} share no seed")
    base = arms[0]
    rows: dict[str, Any] = {}
    for a in arms:
        seen, unseen = _pairs(runs[a], "seen", seeds), _pairs(runs[a], "unseen", seeds)
        row: dict[str, Any] = {"label": arm_spec(a).label, "seen": _interval(cells(_zeros(seen), seen), reps),
                               "unseen": _interval(cells(_zeros(unseen), unseen), reps)}
        gap = np.array(row["seen"]["per_seed"]) - np.array(row["unseen"]["per_seed"])
        m, lo, hi, plo, phi = _t(gap / 100)
        row["gap"] = {"value": round(m, 2), "ci": [round(lo, 2), round(hi, 2)], "t_ci": [round(lo, 2), round(hi, 2)],
                      "another_cpu": [round(plo, 2), round(phi, 2)], "per_seed": [round(float(g), 2) for g in gap]}
        row["gap"]["direction"] = _direction(row["gap"], "unseen persons lower", "unseen persons higher")
        if a != base:
            row["diff"] = _interval(cells(_pairs(runs[base], "unseen", seeds), unseen), reps)
            row["diff"]["direction"] = _direction(row["diff"], f"better than {arm_spec(base).label}",
                                                  f"worse than {arm_spec(base).label}")
        row["stalled_seeds"] = [s for s in seeds if runs[a][s].get("stalled")]
        rows[a] = row
    chance = 100 * CHANCE
    base_gap = rows[base]["gap"]
    checks = {"baseline_gap_at_least_10": bool(base_gap["value"] >= MIN_GAP),
              "every_row_at_least_3x_chance": all(r["unseen"]["value"] >= MIN_CHANCE_MULTIPLE * chance
                                                  for r in rows.values())}
    held_out = sorted({int(p) for s in seeds for p in runs[base][s]["unseen"]["person"]})
    cpus = sorted({str(runs[a][s].get("cpu", {}).get("model", "not recorded")) for a in arms for s in seeds})
    return {"factor": factor, "seeds": seeds, "held_out_persons": len(held_out), "chance": round(chance, 2),
            "arms": list(arms), "rows": rows, "checks": checks, "cpus": cpus}


def _cell(d: dict[str, Any]) -> str:
    return f"{d['value']:.1f} [{d['ci'][0]:.1f}, {d['ci'][1]:.1f}]"


def _signed(d: dict[str, Any]) -> str:
    both = f"{d['value']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]"
    return both if d["ci"] == d["t_ci"] else both + f" t [{d['t_ci'][0]:+.1f}, {d['t_ci'][1]:+.1f}]"


def gap_lines(res: dict[str, Any]) -> list[str]:
    """The demo's table and its reading, as markdown lines (printed as they are by the command)."""
    rows = res["rows"]
    lines = ["| method | seen Top-1 | unseen Top-1 | person gap (seen - unseen) | unseen vs " + rows[res['arms'][0]]['label']
             + " | another CPU: unseen Top-1; diff land in |", "|---|---|---|---|---|---|"]
    for a, r in rows.items():
        diff = f"{_signed(r['diff'])}: {r['diff']['direction']}" if "diff" in r else "(reference)"
        pi = r["unseen"]["another_cpu"]
        pd = f"; [{r['diff']['another_cpu'][0]:+.1f}, {r['diff']['another_cpu'][1]:+.1f}]" if "diff" in r else ""
        lines.append(f"| {r['label']} | {_cell(r['seen'])} | {_cell(r['unseen'])} | {_signed(r['gap'])}: "
                     f"{r['gap']['direction']} | {diff} | [{pi[0]:.1f}, {pi[1]:.1f}]{pd} |")
    c = res["checks"]
    lines += ["", f"Chance {res['chance']:.1f} %; {len(res['seeds'])} seeds ({', '.join(map(str, res['seeds']))}), "
              f"{res['held_out_persons']} held-out persons. Person gap of the baseline >= {MIN_GAP:.0f} points: "
              f"{'yes' if c['baseline_gap_at_least_10'] else 'NO'}; every row's unseen Top-1 >= "
              f"{MIN_CHANCE_MULTIPLE:.0f}x chance: {'yes' if c['every_row_at_least_3x_chance'] else 'NO'}."]
    stalled = [f"{r['label']} seed {s}" for r in rows.values() for s in r["stalled_seeds"]]
    if stalled:
        lines.append("Runs whose stall guard fired (kept): " + ", ".join(stalled) + ".")
    return lines


def _figure(res: dict[str, Any], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    x = np.arange(len(rows))
    for j, (part, colour) in enumerate((("seen", "#4c72b0"), ("unseen", "#dd8452"))):
        v = [r[part]["value"] for r in rows.values()]
        err = [[r[part]["value"] - r[part]["ci"][0] for r in rows.values()],
               [r[part]["ci"][1] - r[part]["value"] for r in rows.values()]]
        ax.bar(x + (j - 0.5) * 0.38, v, 0.38, yerr=err, capsize=3, color=colour,
               label=f"{part} persons" + (f" ({res['factor']} shifted)" if part == "unseen" else ""))
        for s in range(len(res["seeds"])):  # each seed's value as a dot
            ax.plot(x + (j - 0.5) * 0.38, [r[part]["per_seed"][s] for r in rows.values()], "k.", ms=4)
    ax.axhline(res["chance"], color="k", ls="--", lw=0.8, label=f"chance {res['chance']:.1f} %")
    ax.set_xticks(x, [r["label"] for r in rows.values()], fontsize=8)
    ax.set_ylabel("action Top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Person gap on '{res['factor']}': {len(res['seeds'])} seeds, 95 % crossed seed x person bootstrap"
                 f" (dots: seeds)\n{meta['machine']}", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    fig.text(0.5, 0.01, "Synthetic MA-52-format data at CPU scale, not MA-52", ha="center", va="bottom",
             color="#b00000", fontsize=9, fontweight="bold")
    fig.tight_layout(rect=(0.0, 0.05, 1.0, 1.0))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _tex(res: dict[str, Any]) -> str:
    out = ["% person-gap demo (synthetic data, not MA-52): action Top-1 (%), 95 % crossed-bootstrap intervals",
           r"\begin{tabular}{lcccc}", r"\toprule",
           r"method & seen & unseen & gap (seen $-$ unseen) & unseen $-$ baseline \\", r"\midrule"]
    for r in res["rows"].values():
        diff = _cell(r["diff"]) if "diff" in r else "--"
        out.append(f"{r['label']} & {_cell(r['seen'])} & {_cell(r['unseen'])} & {_cell(r['gap'])} & {diff} \\\\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out).replace("%)", r"\%)").replace("95 %", r"95 \%")


def write_gap_report(out: Path, *, command: str, factor: str = GAP_FACTOR, arms: Sequence[str] = GAP_ARMS,
                     reps: int = 2000) -> dict[str, Any]:
    """Analyse the runs under ``out`` and write ``gap.json``, ``gap.md``, ``gap.tex`` and ``gap.png`` there."""
    res = analyse_gap(out, factor, arms, reps)
    cpu = cpu_identity()
    meta = {"command": command, "commit": _commit(), "written": timestamp(),
            "machine": f"{cpu['model']} ({cpu['torch_capability']} kernels)", "cpus_of_runs": res["cpus"]}
    write_json_atomic(out / "gap.json", {"meta": meta, **res})
    md = [f"# Person-gap demo: '{factor}' (synthetic task v2, not MA-52)", "", f"command: `{command}`  ",
          f"commit: {meta['commit']}, written {meta['written']}  ", f"CPU: {meta['machine']}", "",
          "Action Top-1 (%) with 95 % intervals: [crossed seed x person bootstrap] and t [over seeds]; a direction "
          "is stated only where both exclude 0. The last column: where the same command's mean should land on "
          "another CPU (the recipe is chaotic; seed-to-seed variation stands in for machine-to-machine).", "",
          *gap_lines(res), ""]
    write_text_atomic(out / "gap.md", "\n".join(md))
    write_text_atomic(out / "gap.tex", _tex(res))
    _figure(res, out / "gap.png", meta)
    return {"meta": meta, **res}
