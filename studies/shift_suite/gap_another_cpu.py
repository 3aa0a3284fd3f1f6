"""Does the person-gap demo's "another CPU" interval hold? Reads two ``gap.json`` files of the same command run
under different kernels or machines (the reference first) and checks, per method, whether the other run's unseen
Top-1 and its difference to the baseline land inside the reference's ``another_cpu`` intervals (and inside its 95 %
intervals, which are not made for this); prints a markdown table and writes it as JSON.

    python studies/shift_suite/gap_another_cpu.py artifacts/reproduce/person-gap/gap.json \\
        artifacts/reproduce/person-gap/another-cpu/avx2/gap.json --out artifacts/reproduce/person-gap/another-cpu/check.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _inside(v: float, iv: list[float]) -> bool:
    return iv[0] <= v <= iv[1]


def compare(ref: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method of ``ref``: the other run's unseen Top-1 and difference, and whether each lies inside the
    reference's ``another_cpu`` and 95 % (crossed bootstrap) intervals."""
    rows = []
    for arm, r in ref["rows"].items():
        o = other["rows"][arm]
        row: dict[str, Any] = {"arm": arm, "label": r["label"], "unseen_ref": r["unseen"]["value"],
                               "unseen_other": o["unseen"]["value"], "unseen_another_cpu": r["unseen"]["another_cpu"],
                               "unseen_inside": _inside(o["unseen"]["value"], r["unseen"]["another_cpu"]),
                               "unseen_inside_ci": _inside(o["unseen"]["value"], r["unseen"]["ci"])}
        if "diff" in r:
            row |= {"diff_ref": r["diff"]["value"], "diff_other": o["diff"]["value"],
                    "diff_another_cpu": r["diff"]["another_cpu"],
                    "diff_inside": _inside(o["diff"]["value"], r["diff"]["another_cpu"]),
                    "diff_inside_ci": _inside(o["diff"]["value"], r["diff"]["ci"])}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", type=Path, help="gap.json whose intervals are checked")
    ap.add_argument("other", type=Path, help="gap.json of the same command on another CPU or kernel set")
    ap.add_argument("--out", type=Path, help="write the comparison here (JSON)")
    args = ap.parse_args(argv)
    ref, other = (json.loads(p.read_text(encoding="utf-8")) for p in (args.reference, args.other))
    if ref["seeds"] != other["seeds"] or ref["factor"] != other["factor"]:
        raise SystemExit(f"error: {args.other}: other seeds or factor than {args.reference}")
    rows = compare(ref, other)
    print(f"reference: {ref['meta']['machine']}; other: {other['meta']['machine']}; factor {ref['factor']}, "
          f"seeds {ref['seeds']}")
    print("| method | unseen: ref / other (another-CPU interval) | inside | diff: ref / other (another-CPU interval) "
          "| inside |\n|---|---|---|---|---|")
    for r in rows:
        d = (f"{r['diff_ref']:+.1f} / {r['diff_other']:+.1f} ([{r['diff_another_cpu'][0]:+.1f}, "
             f"{r['diff_another_cpu'][1]:+.1f}]) | {'yes' if r['diff_inside'] else 'NO'}") if "diff_ref" in r else "- | -"
        print(f"| {r['label']} | {r['unseen_ref']:.1f} / {r['unseen_other']:.1f} ([{r['unseen_another_cpu'][0]:.1f}, "
              f"{r['unseen_another_cpu'][1]:.1f}]) | {'yes' if r['unseen_inside'] else 'NO'} | {d} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"reference": str(args.reference), "other": str(args.other),
                                        "reference_machine": ref["meta"]["machine"],
                                        "other_machine": other["meta"]["machine"], "rows": rows}, indent=2) + "\n",
                            encoding="utf-8")


if __name__ == "__main__":
    main()
