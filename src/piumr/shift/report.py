"""Analysis and files of the person-shift suite: ``results.json``, ``summary.json`` (v2: the shape the
benchmark's acceptance reads), ``table.tex``, ``shift_suite.png``, the leaderboard (``leaderboard.md``,
``leaderboard.tex``, ``leaderboard.png``, ``piumr.shift.leaderboard``) and ``summary.md``.

Per factor (the analysis ``docs/shift_suite_protocol.md`` fixes), every interval from the crossed bootstrap over
seeds x persons (``piumr.shift.stats``):

- primary: PIUmr - baseline, unseen-person action Top-1, 95 % and Holm-adjusted across the five factors;
- controls: positive control - baseline (with the seed t interval too) and A/A - baseline (same metric);
- secondaries (Holm-adjusted together): + TFAM - baseline, + GIRL - baseline (unseen action Top-1) and
  PIUmr - baseline on unseen body Top-1 and on seen-person action Top-1;
- methods: every arm of PIUmr's ablation and every baseline against the baseline, Holm per factor;
- the baseline's unseen Top-1 and seen - unseen gap (action Top-1, points), held-out persons and seeds;
- the minimum detectable effect (80 % power, 95 % two-sided) of the primary comparison.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from piumr.files import atomic_write, write_json_atomic, write_text_atomic
from piumr.runtime import cpu_identity
from scipy import stats  # type: ignore[import-untyped]

from piumr.shift.arms import ARM_SPECS
from piumr.shift.stats import Cells, Comparison, cells, crossed_bootstrap, holm_levels, mde, seed_t_interval
from piumr.shift.suite import load_runs, timestamp

__all__ = ["CHANCE", "METHODS", "analyse", "validity", "write_report", "SECONDARIES"]

#: chance of action Top-1 on task v2 (21 classes)
CHANCE = 1.0 / 21.0
#: the arms ranked on the leaderboard against the baseline (Holm per factor): PIUmr's parts and the baselines
METHODS: tuple[str, ...] = tuple(a for a, spec in ARM_SPECS.items() if spec.kind in ("ablation", "baseline-method")
                                 and a != "baseline")
Runs = dict[int, dict[str, Any]]
#: name -> (arm a, arm b, evaluated set, metric)
SECONDARIES: dict[str, tuple[str, str, str, str]] = {
    "tfam_minus_baseline": ("baseline", "tfam", "unseen", "action"),
    "girl_minus_baseline": ("baseline", "girl", "unseen", "action"),
    "piumr_minus_baseline_body": ("baseline", "piumr", "unseen", "body"),
    "piumr_minus_baseline_seen": ("baseline", "piumr", "seen", "action"),
}


def _pick(runs: Runs, part: str, metric: str, seeds: list[int]) -> dict[int, tuple[list[int], list[int]]]:
    return {s: (runs[s][part][metric], runs[s][part]["person"]) for s in seeds}


def _cells(arms: dict[str, Runs], a: str, b: str, part: str, metric: str, seeds: list[int]) -> Cells:
    return cells(_pick(arms[a], part, metric, seeds), _pick(arms[b], part, metric, seeds))


def _ci(c: Comparison) -> dict[str, Any]:
    return {"diff": round(c.diff, 2), "ci": [round(c.lo, 2), round(c.hi, 2)], "half_width": round(c.half_width, 2),
            "se": round(c.se, 2), "level": round(c.level, 4)}


def _acc(runs: Runs, part: str, metric: str, seeds: list[int]) -> float:
    return 100 * float(np.mean([v for s in seeds for v in runs[s][part][metric]]))


def _p(c: Comparison) -> float:
    """Two-sided p-value of ``c`` (normal approximation, diff / bootstrap SE)."""
    return 2 * float(stats.norm.sf(abs(c.diff) / c.se)) if c.se > 0 else (0.0 if c.diff else 1.0)


def _holm(cs: dict[str, Cells], reps: int) -> dict[str, dict[str, Any]]:
    """Each comparison at 95 % and at its Holm step-down level over the family ``cs`` (``ci_holm``)."""
    raw = {k: crossed_bootstrap(c, reps=reps) for k, c in cs.items()}
    levels = holm_levels([_p(c) for c in raw.values()])
    out = {}
    for (k, c), lvl in zip(cs.items(), levels, strict=True):
        adj = crossed_bootstrap(c, level=lvl, reps=reps)
        out[k] = {**_ci(raw[k]), "p": round(_p(raw[k]), 4), "ci_holm": [round(adj.lo, 2), round(adj.hi, 2)],
                  "level_holm": round(lvl, 4)}
    return out


def _common(arms: dict[str, Runs], *names: str) -> list[int]:
    return sorted(set.intersection(*(set(arms[n]) for n in names)))


def analyse_factor(arms: dict[str, Runs], reps: int = 2000) -> dict[str, Any] | None:
    """The factor's comparisons (None without baseline and PIUmr on a common seed). Each comparison uses the seeds
    its two arms share (protocol deviation 3): the primary, PIUmr's secondaries on body and seen Top-1 and the
    baseline's own numbers every seed of baseline and PIUmr; each control its seeds with the baseline; the
    leaderboard's methods (and its baseline row) the seeds that the baseline and every method share. Intervals:
    crossed bootstrap over seeds x persons (``piumr.shift.stats``)."""
    if "baseline" not in arms or "piumr" not in arms:
        return None
    seeds = _common(arms, "baseline", "piumr")
    if not seeds:
        return None
    out: dict[str, Any] = {"seeds": len(seeds), "seed_list": seeds}
    if len(seeds) < 2:  # the seed stage of the bootstrap has nothing to resample
        out["warning"] = "one seed: intervals cover person and clip noise only, not training-seed noise"
    prim_cells = _cells(arms, "baseline", "piumr", "unseen", "action", seeds)
    prim = crossed_bootstrap(prim_cells, reps=reps)
    out["primary"] = {**_ci(prim), "p": round(_p(prim), 4), "mde": round(mde(prim.se), 2)}
    for name, arm in (("positive_control", "control"), ("aa_control", "aa")):
        ss = _common(arms, "baseline", arm) if arm in arms else []
        if ss:
            c = _cells(arms, "baseline", arm, "unseen", "action", ss)
            _, lo, hi = seed_t_interval(c)
            out[name] = {**_ci(crossed_bootstrap(c, reps=reps)), "t_ci": [round(lo, 2), round(hi, 2)],
                         "seeds": len(ss)}
    sec = {k: v for k, v in SECONDARIES.items() if v[0] in arms and v[1] in arms}
    sec_seeds = {k: _common(arms, v[0], v[1]) for k, v in sec.items()}
    out["secondary_holm"] = _holm({k: _cells(arms, *v, sec_seeds[k]) for k, v in sec.items() if sec_seeds[k]},
                                  reps) if sec else {}
    for k, h in out["secondary_holm"].items():
        h["seeds"] = len(sec_seeds[k])
    b = arms["baseline"]
    out["baseline_unseen"] = round(_acc(b, "unseen", "action", seeds), 2)
    out["baseline_seen_minus_unseen"] = round(_acc(b, "seen", "action", seeds) - out["baseline_unseen"], 2)
    out["held_out_persons"] = len({p for s in seeds for p in b[s]["unseen"]["person"]})
    out["arms"] = {arm: {**{f"{part}_{m}": round(_acc(r, part, m, ss), 2) for part in ("seen", "unseen")
                            for m in ("action", "body")}, "seeds": len(ss)}
                   for arm, r in arms.items() if (ss := seeds if arm == "baseline" else _common(arms, "baseline", arm))}
    present = [name for name in METHODS if name in arms]
    board = _common(arms, "baseline", *present)
    holm_m = _holm({name: _cells(arms, "baseline", name, "unseen", "action", board) for name in present},
                   reps) if board else {}
    methods: dict[str, dict[str, Any]] = {"baseline": {
        "unseen": round(_acc(b, "unseen", "action", board or seeds), 2), "diff": 0.0, "ci": [0.0, 0.0],
        "seeds": len(board or seeds)}}
    for name in present if board else []:
        h = holm_m[name]
        methods[name] = {"unseen": round(_acc(arms[name], "unseen", "action", board), 2), "diff": h["diff"],
                         "ci": h["ci"], "ci_holm": h["ci_holm"], "p": h["p"], "seeds": len(board)}
    out["methods"] = methods
    if board and "aa" in arms and set(board) <= set(arms["aa"]):  # the A/A on the leaderboard's own seeds
        out["methods_aa_control"] = {**_ci(crossed_bootstrap(_cells(arms, "baseline", "aa", "unseen", "action",
                                                                    board), reps=reps)), "seeds": len(board)}
    out["train_s_mean"] = round(float(np.mean([r[s]["train_s"] for r in arms.values() for s in seeds if s in r])), 1)
    tf = [r[s]["tfam_map"] for r in arms.values() for s in seeds if s in r and r[s].get("tfam_map")]
    out["tfam_map"] = tf[0] if tf else None
    return out


def analyse(out: Path, reps: int = 2000) -> dict[str, Any]:
    """Every factor's analysis from the run files under ``out``, with the primaries Holm-adjusted across the
    factors (``primary["ci_holm"]``)."""
    runs = load_runs(out)
    res = {f: r for f, r in ((f, analyse_factor(arms, reps)) for f, arms in runs.items()) if r is not None}
    prim = {f: _cells(runs[f], "baseline", "piumr", "unseen", "action", r["seed_list"]) for f, r in res.items()}
    for f, h in _holm(prim, reps).items():
        res[f]["primary"].update(ci_holm=h["ci_holm"], level_holm=h["level_holm"])
    for r in res.values():
        r["validity"] = validity(r)
        r["valid"] = all(r["validity"].values())
        r["leaderboard_valid"] = r["valid"] and leaderboard_aa_covers_0(r)
    return res


def leaderboard_aa_covers_0(r: dict[str, Any]) -> bool:
    """Whether the A/A over the leaderboard's seeds covers 0 (protocol deviation 4: where the leaderboard has fewer
    seeds than the factor's A/A, its own seeds' A/A decides whether its differences are read); True without one."""
    aa = r.get("methods_aa_control")
    return aa is None or aa["ci"][0] <= 0 <= aa["ci"][1]


def summary(results: dict[str, Any], protocol_commit: str | None = None) -> dict[str, Any]:
    """The acceptance shape (v2): ``{"version", "protocol_commit", "chance", "factors": {NAME: {primary,
    positive_control (with the seed t interval ``t_ci``), aa_control, baseline_seen_minus_unseen, held_out_persons,
    seeds, baseline_unseen, methods: {NAME: {unseen, diff, ci}}}}}`` (accuracies in %, differences in points)."""
    def pick(c: dict[str, Any], *extra: str) -> dict[str, Any]:
        return {k: c[k] for k in ("diff", "ci", "half_width", *extra) if k in c}

    return {"version": 2, "protocol_commit": protocol_commit, "chance": round(100 * CHANCE, 2), "factors": {
        f: {"primary": pick(r["primary"], "ci_holm"),
            **({"positive_control": pick(r["positive_control"], "t_ci", "seeds")} if "positive_control" in r else {}),
            **({"aa_control": pick(r["aa_control"], "t_ci", "seeds")} if "aa_control" in r else {}),
            "baseline_seen_minus_unseen": r["baseline_seen_minus_unseen"], "held_out_persons": r["held_out_persons"],
            "seeds": r["seeds"], "baseline_unseen": r["baseline_unseen"], "valid": r["valid"],
            "validity": r["validity"],
            "methods": {m: {k: v[k] for k in ("unseen", "diff", "ci")} for m, v in r["methods"].items()}}
        for f, r in results.items()}}


#: the protocol's validity criteria of a factor (docs/shift_suite_protocol.md, "Validity of a factor")
MIN_SEEDS, MIN_PERSONS, MIN_GAP = 10, 40, 10.0


def validity(r: dict[str, Any]) -> dict[str, bool]:
    """The protocol's five validity criteria of a factor's analysis ``r`` (checked before its verdicts are read):
    baseline unseen Top-1 >= 3 x chance, seen - unseen >= 10 points, the positive control excluding 0 above by the
    crossed bootstrap and the seed t interval, the A/A's crossed interval covering 0, >= 40 held-out persons and
    >= 10 seeds. A criterion whose arm is missing counts as failed."""
    pc, aa = r.get("positive_control"), r.get("aa_control")
    return {"baseline_at_least_3x_chance": r["baseline_unseen"] >= 300 * CHANCE,
            "gap_at_least_10": r["baseline_seen_minus_unseen"] >= MIN_GAP,
            "positive_control_excludes_0": pc is not None and pc["ci"][0] > 0 and pc["t_ci"][0] > 0,
            "aa_covers_0": aa is not None and aa["ci"][0] <= 0 <= aa["ci"][1],
            "persons_and_seeds": r["held_out_persons"] >= MIN_PERSONS and r["seeds"] >= MIN_SEEDS}


def _verdict(c: dict[str, Any], seeds: int, valid: dict[str, bool] | None = None) -> str:
    if seeds < 2:
        return "no verdict (one seed)"
    failed = [k for k, ok in (valid or {}).items() if not ok and k != "persons_and_seeds"]
    if failed:  # the protocol: a factor that fails is reported as uninformative, not read (and not a null)
        return "uninformative (fails " + ", ".join(failed) + "): not read"
    lo, hi = c.get("ci_holm", c["ci"])  # the protocol's verdict: Holm across the five factors' primaries
    if lo > 0:
        return "PIUmr helps (Holm)"
    if hi < 0:
        return "PIUmr hurts (Holm)"
    return f"no difference resolved at ±{(hi - lo) / 2:.1f} points (Holm)"


def _valid_words(v: dict[str, bool] | None) -> str:
    if v is None:
        return "—"
    failed = [k for k, ok in v.items() if not ok]
    return "yes" if not failed else "no: " + ", ".join(failed)


def _tex(results: dict[str, Any]) -> str:
    rows = [r"\begin{tabular}{lrrrrrrr}", r"\toprule",
            r"factor & PIUmr$-$base & MDE & pos.\ control & A/A & +TFAM & +GIRL & gap \\", r"\midrule"]

    def cell(c: dict[str, Any] | None) -> str:
        return "--" if c is None else f"{c['diff']:+.1f} [{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}]"

    for f, r in results.items():
        sec = r["secondary_holm"]
        rows.append(f"{f} & {cell(r['primary'])} & {r['primary']['mde']:.1f} & {cell(r.get('positive_control'))} & "
                    f"{cell(r.get('aa_control'))} & {cell(sec.get('tfam_minus_baseline'))} & "
                    f"{cell(sec.get('girl_minus_baseline'))} & {r['baseline_seen_minus_unseen']:.1f} \\\\")
    rows += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(rows)


def _markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# Person-shift suite ({'partial' if meta['partial'] else 'complete'})", "",
             f"command: `{meta['command']}`  ",
             *(f"trained by: `{c['command']}` ({c['started']}" + (f"; {c['note']}" if c.get("note") else "") + ")  "
               for c in meta.get("training_commands", [])),
             f"commit: {meta['commit']}  ", f"machine: {meta['machine']}  ",
             f"written: {meta['written']}  ", f"positive control: {_CONTROL_WORDS.get(meta['control'], '?')}  ",
             "trained on: " + (", ".join(f"{d} ({n} runs)" for d, n in meta.get("devices", {}).items()) or "-")
             + "; CPUs: " + (", ".join(f"{c}: {n} runs" for c, n in meta.get("cpus", {}).items()) or "not recorded")
             + "  ",
             "runs that did not train (seen-persons Top-1 below twice chance; kept in the analysis): "
             + (", ".join(meta["untrained_runs"]) or "none") + "  ",
             "runs whose stall guard fired (cross-entropy at chance 200 steps after warm-up): "
             + (", ".join(meta.get("stalled_runs", [])) or "none"), "",
             ("Primary, fixed in docs/shift_suite_protocol.md at commit " + meta["protocol_commit"]
              if meta.get("protocol_commit") else "Primary (no protocol commit recorded: not pre-registered)")
             + ": PIUmr - baseline, unseen-person action Top-1, points, 95 % interval from the crossed bootstrap "
             "(seeds x persons); each comparison on the seeds its two arms share (protocol deviation 3; a control's count "
             "shown where it differs). Secondary +TFAM / +GIRL: Holm-adjusted. Every method: leaderboard.md. Validity: the "
             "protocol's five criteria (baseline >= 3x chance, gap >= 10, positive control excludes 0 by both "
             "intervals, A/A covers 0, >= 40 persons and >= 10 seeds); a factor that fails one is uninformative.", "",
             "| factor | seeds | held-out persons | PIUmr - base | MDE | verdict | pos. control | A/A | "
             "+TFAM | +GIRL | baseline gap | TFAM map | valid |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(c: dict[str, Any] | None, seeds: int | None = None) -> str:
        if c is None:
            return "—"
        n = f" ({c['seeds']} seeds)" if seeds is not None and c.get("seeds", seeds) != seeds else ""
        return f"{c['diff']:+.1f} [{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}]{n}"

    for f, r in results.items():
        sec, n = r["secondary_holm"], r["seeds"]
        tm = "x".join(str(v) for v in r["tfam_map"]) if r.get("tfam_map") else "—"
        lines.append(f"| {f} | {r['seeds']} | {r['held_out_persons']} | {cell(r['primary'])} | {r['primary']['mde']:.1f} "
                     f"| {_verdict(r['primary'], r['seeds'], r.get('validity'))} | {cell(r.get('positive_control'), n)} | "
                     f"{cell(r.get('aa_control'), n)} | {cell(sec.get('tfam_minus_baseline'), n)} | "
                     f"{cell(sec.get('girl_minus_baseline'), n)} | "
                     f"{r['baseline_seen_minus_unseen']:+.1f} | {tm} | {_valid_words(r.get('validity'))} |")
    lines += [f"- {f}: {r['warning']}" for f, r in results.items() if "warning" in r]
    lines.append("")
    return "\n".join(lines)


def _figure(results: dict[str, Any], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [("primary", "PIUmr-base"), ("positive_control", "pos. control"), ("aa_control", "A/A")]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for j, (key, label) in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for i, r in enumerate(results.values()):
            if key in r:
                xs.append(i + (j - 1) * 0.25)
                ys.append(r[key]["diff"])
                lo.append(r[key]["diff"] - r[key]["ci"][0])
                hi.append(r[key]["ci"][1] - r[key]["diff"])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=label)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(results)), [f + ("\n(invalid: not read)" if r.get("valid") is False else "")
                                         for f, r in results.items()])
    ax.set_ylabel("unseen action Top-1 diff (points)")
    seeds = sorted({r["seeds"] for r in results.values()})
    state = (f"PARTIAL: {meta['runs_missing']} of the design's {meta['runs_expected']} runs missing, "
             f"{'/'.join(map(str, seeds))} seed(s)"
             if meta["partial"] else f"{'/'.join(map(str, seeds))} seeds")
    for key, label in names[1:]:  # a control on fewer seeds than the primary (protocol deviation 3)
        own = sorted({r[key]["seeds"] for r in results.values() if key in r and "seeds" in r[key]})
        if own and own != seeds:
            state += f"; {label} {'/'.join(map(str, own))} seeds"
    ax.set_title(f"Person-shift suite (synthetic task v2): 95 % intervals, crossed seed x person bootstrap\n{state}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.text(0.5, 0.01, "Synthetic MA-52-format data at CPU scale, not MA-52", ha="center", va="bottom",
             color="#b00000", fontsize=9, fontweight="bold")
    fig.tight_layout(rect=(0.0, 0.05, 1.0, 1.0))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


_CONTROL_WORDS = {"data": "'data', the baseline trained on persons whose factor covers the held-out range too",
                  "augment": "'augment', the baseline trained with the factor's augmentation"}


def _control(out: Path) -> str | None:
    """The positive control of the suite under ``out`` (its ``suite.json``), None when it records none."""
    p = out / "suite.json"
    return json.loads(p.read_text(encoding="utf-8")).get("control") if p.is_file() else None


#: a run whose seen-persons action Top-1 stays below twice chance (21 classes) did not train
UNTRAINED_BELOW = 2.0 * CHANCE


def untrained_runs(out: Path) -> list[str]:
    """Run files under ``out`` (``<arm>/seed<k>``) whose seen-persons action Top-1 is below ``UNTRAINED_BELOW``:
    kept in the analysis (dropping them would bias it), but named in the report."""
    bad = []
    for p in sorted((out / "runs").glob("*/seed*.json")):
        seen = json.loads(p.read_text(encoding="utf-8")).get("seen", {}).get("action", [])
        if seen and sum(seen) / len(seen) < UNTRAINED_BELOW:
            bad.append(f"{p.parent.name}/{p.stem}")
    return bad


def stalled_runs(out: Path) -> list[str]:
    """Run files under ``out`` whose stall guard fired (``stalled``: the cross-entropy still at chance after one
    epoch or 200 steps; runs from before the guard record nothing and are not counted)."""
    return [f"{p.parent.name}/{p.stem}" for p in sorted((out / "runs").glob("*/seed*.json"))
            if json.loads(p.read_text(encoding="utf-8")).get("stalled")]


def _cpus(out: Path) -> dict[str, int]:
    """"CPU model (torch kernel set)" -> number of run files trained on it (runs from before the field: not counted)."""
    count: dict[str, int] = {}
    for p in (out / "runs").glob("*/seed*.json"):
        cpu = json.loads(p.read_text(encoding="utf-8")).get("cpu")
        if cpu:
            key = f"{cpu['model']} ({cpu['torch_capability']})"
            count[key] = count.get(key, 0) + 1
    return dict(sorted(count.items()))


def _devices(out: Path) -> dict[str, int]:
    """Device -> number of run files trained on it (runs from before the field existed trained on the CPU)."""
    count: dict[str, int] = {}
    for p in (out / "runs").glob("*/seed*.json"):
        dev = str(json.loads(p.read_text(encoding="utf-8")).get("device", "cpu"))
        count[dev] = count.get(dev, 0) + 1
    return dict(sorted(count.items()))


def _protocol_commit(out: Path) -> str | None:
    """The protocol's commit recorded in ``out/suite.json`` when the suite's first run started (None: not
    recorded)."""
    p = out / "suite.json"
    return json.loads(p.read_text(encoding="utf-8")).get("protocol_commit") if p.is_file() else None


def _training_commands(out: Path) -> list[dict[str, str]]:
    """The commands that trained into ``out`` with their start times, as ``suite.json`` recorded them."""
    p = out / "suite.json"
    return list(json.loads(p.read_text(encoding="utf-8")).get("commands", [])) if p.is_file() else []


def write_report(out: Path, *, command: str, expected_runs: int, missing_runs: int | None = None,
                 reps: int = 2000) -> dict[str, Any]:
    """Analyse ``out`` and write its files. ``expected_runs``: the protocol's design (its 10 seeds x every arm);
    ``missing_runs``: how many of those have no complete run file (None: ``expected_runs`` less the run files
    present); ``partial`` when any is missing. Seeds beyond the design (protocol deviations 3 and 5) count in
    ``runs_done``, never against the design."""
    from piumr.shift.leaderboard import write_leaderboard

    results = analyse(out, reps)
    done = len(list((out / "runs").glob("*/seed*.json")))
    missing = max(0, expected_runs - done) if missing_runs is None else missing_runs
    protocol = _protocol_commit(out)
    meta: dict[str, Any] = {"command": command, "commit": _commit(), "machine": f"{platform.machine()} {platform.system()}, "
            f"{cpu_identity()['model']}", "cpus": _cpus(out), "written": timestamp(), "runs_done": done,
            "runs_expected": expected_runs, "runs_missing": missing, "partial": missing > 0, "control": _control(out),
            "untrained_runs": untrained_runs(out), "stalled_runs": stalled_runs(out), "devices": _devices(out),
            "protocol_commit": protocol, "training_commands": _training_commands(out)}
    write_json_atomic(out / "results.json", {"meta": meta, "factors": results})
    write_json_atomic(out / "summary.json", summary(results, protocol))  # partial: see results.json
    write_text_atomic(out / "table.tex", _tex(results))
    write_text_atomic(out / "summary.md", _markdown(results, meta))
    if results:
        _figure(results, out / "shift_suite.png", meta)
        write_leaderboard(results, out, meta)
    return {"meta": meta, "factors": results}
