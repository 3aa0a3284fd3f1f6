"""The person-shift suite's leaderboard: every method x factor, unseen-person action Top-1 and its difference to
the baseline with the Holm-adjusted interval (per factor, over the methods), as ``leaderboard.md``,
``leaderboard.tex`` and ``leaderboard.png`` (chance drawn on it). Reads ``piumr.shift.report.analyse``'s results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from piumr.files import atomic_write, write_text_atomic
from piumr.shift.arms import ARM_SPECS

__all__ = ["leaderboard_rows", "ranks", "write_leaderboard"]


def leaderboard_rows(results: dict[str, Any]) -> list[str]:
    """The methods present in any factor, in ``ARM_SPECS`` order (the baseline first)."""
    present = {m for r in results.values() for m in r.get("methods", {})}
    return [m for m in ARM_SPECS if m in present]


def ranks(results: dict[str, Any]) -> dict[str, dict[str, int]]:
    """factor -> method -> rank by unseen Top-1 (1 = best; ties share the better rank)."""
    out: dict[str, dict[str, int]] = {}
    for f, r in results.items():
        acc = {m: v["unseen"] for m, v in r.get("methods", {}).items()}
        out[f] = {m: 1 + sum(1 for o in acc.values() if o > a) for m, a in acc.items()}
    return out


def _verdict(m: dict[str, Any]) -> str:
    lo, hi = m.get("ci_holm", m["ci"])
    return "better" if lo > 0 else "worse" if hi < 0 else "="


def _cell(r: dict[str, Any], m: str, rank: int | None, missing: str, sep: str) -> str:
    """One method's cell of one factor: unseen Top-1, then (not for the baseline) the difference with its Holm
    interval and, with a ``rank``, the verdict and the rank."""
    v = r.get("methods", {}).get(m)
    if v is None:
        return missing
    tail = f" (rank {rank})" if rank is not None else ""
    if m == "baseline":
        return f"{v['unseen']:.1f}{tail}"
    lo, hi = v.get("ci_holm", v["ci"])
    verdict = f" {_verdict(v)}" if rank is not None else ""
    return f"{v['unseen']:.1f}{sep}{v['diff']:+.1f} [{lo:+.1f}, {hi:+.1f}]{verdict}{tail}"


def _markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = leaderboard_rows(results)
    rk = ranks(results)
    factors = list(results)
    lines = ["# Person-shift suite: leaderboard", "",
             "Unseen-person action Top-1 (%) per method and factor; below it the difference to the baseline (points) "
             "with its 95 % interval Holm-adjusted over the methods of the factor (crossed seed x person bootstrap), "
             f"a verdict (better / worse / = where the interval covers 0) and the rank. Chance {100 / 21:.1f} %.", "",
             f"commit: {meta.get('commit')}, written {meta.get('written')}, machine: {meta.get('machine')}"
             + (" — PARTIAL" if meta.get("partial") else ""), "",
             "| method | " + " | ".join(factors) + " |", "|---|" + "---|" * len(factors)]
    for m in rows:
        cells = [_cell(results[f], m, rk[f].get(m), "—", "<br>") for f in factors]
        lines.append(f"| {ARM_SPECS[m].label} | " + " | ".join(cells) + " |")
    bad = {f: [k for k, ok in r.get("validity", {}).items() if not ok] for f, r in results.items()}
    lines += ["", *(f"**{f}** fails the protocol's validity ({', '.join(b)}): its differences are not read."
                    for f, b in bad.items() if b)]
    lines += [f"**{f}**: on the leaderboard's {aa['seeds']} seeds the A/A - baseline is {aa['diff']:+.1f} "
              f"[{aa['ci'][0]:+.1f}, {aa['ci'][1]:+.1f}] (the baseline's runs there are off by chance): its differences "
              "are not read (protocol deviation 4)." for f, r in results.items()
              if not bad[f] and (aa := r.get("methods_aa_control")) and r.get("leaderboard_valid") is False]
    lines.append("")
    return "\n".join(lines)


def _tex(results: dict[str, Any]) -> str:
    factors = list(results)
    out = [r"\begin{tabular}{l" + "r" * len(factors) + "}", r"\toprule",
           "method & " + " & ".join(factors) + r" \\", r"\midrule"]
    for m in leaderboard_rows(results):
        cells = [_cell(results[f], m, None, "--", " ") for f in factors]
        out.append(ARM_SPECS[m].label.replace("&", r"\&").replace("+", r"$+$") + " & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def _figure(results: dict[str, Any], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = leaderboard_rows(results)
    factors = list(results)
    fig, axes = plt.subplots(1, len(factors), figsize=(2.6 * len(factors) + 1.5, 0.32 * len(rows) + 1.6),
                             sharey=True, squeeze=False)
    for ax, f in zip(axes[0], factors, strict=True):
        r = results[f]
        base = r["methods"]["baseline"]["unseen"] if "baseline" in r.get("methods", {}) else r["baseline_unseen"]
        for i, m in enumerate(rows):
            v = r.get("methods", {}).get(m)
            if v is None:
                continue
            lo, hi = v.get("ci_holm", v["ci"])
            colour = "k" if m == "baseline" else "#1f77b4" if lo > 0 else "#d62728" if hi < 0 else "#7f7f7f"
            ax.errorbar(v["unseen"], i, xerr=[[v["diff"] - lo], [hi - v["diff"]]], fmt="o", color=colour,
                        capsize=2, ms=4)
        ax.axvline(base, color="k", lw=0.6, ls=":")
        ax.axvline(100 / 21, color="#b00000", lw=0.8, ls="--")
        invalid = r.get("valid") is False  # the protocol's validity rule: its differences are not read
        why = ", ".join(k for k, ok in r.get("validity", {}).items() if not ok) or "A/A on these seeds\nexcludes 0"
        invalid = invalid or r.get("leaderboard_valid") is False  # deviation 4: the A/A on the leaderboard's seeds
        ax.set_title(f"{f} ({r.get('methods', {}).get('baseline', {}).get('seeds', r['seeds'])} seeds)"
                     + (f"\nINVALID ({why}): not read" if invalid else ""),
                     fontsize=9, color="#b00000" if invalid else "black")
        ax.set_xlabel("unseen Top-1 (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(rows)), [ARM_SPECS[m].label for m in rows])
    axes[0][0].invert_yaxis()
    state = "PARTIAL, " if meta.get("partial") else ""
    fig.suptitle(f"Person-shift suite leaderboard ({state}intervals: difference to the baseline, Holm per factor; "
                 "dotted: the baseline, dashed red: chance; blue: better, red: worse)", fontsize=9)
    fig.text(0.5, 0.01, "Synthetic MA-52-format data at CPU scale, not MA-52", ha="center", va="bottom",
             color="#b00000", fontsize=8, fontweight="bold")
    fig.tight_layout(rect=(0.0, 0.04, 1.0, 0.94))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def write_leaderboard(results: dict[str, Any], out: Path, meta: dict[str, Any]) -> None:
    """``leaderboard.md``, ``leaderboard.tex`` and ``leaderboard.png`` under ``out``."""
    write_text_atomic(out / "leaderboard.md", _markdown(results, meta))
    write_text_atomic(out / "leaderboard.tex", _tex(results))
    _figure(results, out / "leaderboard.png", meta)
