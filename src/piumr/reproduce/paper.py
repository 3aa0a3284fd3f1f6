"""The numbers the PIUmr paper reports (Tables 1-3), transcribed with their sources.

Everything here is *reported*, never measured: the writers keep these rows
apart from the rows this project trains (they are flagged ``reported`` and
never take part in the best / second-best marks).

Column mapping (the paper text's table headers are garbled, see
the MA-52 notes in ``reproduce/README.md``):

* Table 1 columns are, in order, Body Top-1, Action Top-1, Action Top-5,
  Body F1_macro, Body F1_micro, Action F1_macro, Action F1_micro, F1_mean
  (``piumr.metrics.PAPER_COLUMNS``). Check: Body Top-1 == Body F1_micro and
  Action Top-1 == Action F1_micro in every row, as they must for single-label data.
* Tables 2 and 3 print the headers "Body F1_micro, F1_macro, Action F1_micro,
  F1_macro, F1_mean", but the values are Body F1_macro, Body F1_micro,
  Action F1_macro, Action F1_micro, F1_mean: Table 2 row d (= PIUmr) reads
  75.51 80.95 52.79 63.18 68.11, which are PIUmr's Table 1 Body F1_macro,
  Body F1_micro, Action F1_macro, Action F1_micro and F1_mean; and in every row
  the first value of a pair is the smaller one (macro <= micro on a long-tailed set).
  ``ABLATION_COLUMNS`` is the corrected order.
* Table 3 row a (TFAM off, GIRL on) repeats Table 2 row c; Table 3 row e
  repeats Table 2 row d. Table 3's first switch column ("TFAM" in the text,
  an OCR merge of the group header with "Fre.") is the frequency branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from piumr.metrics import PAPER_COLUMNS

__all__ = [
    "PAPER", "ReportedRow", "TABLE1_COLUMNS", "ABLATION_COLUMNS", "TABLE1_REPORTED", "TABLE1_PIUMR",
    "TABLE1_BASELINE_FROM_TABLE2", "TABLE2", "TABLE3",
]

#: Short citation of the paper every value below comes from.
PAPER = "PIUmr paper (\"Every Subtlety Counts\")"

#: Table 1 metric keys in the paper's column order.
TABLE1_COLUMNS: tuple[str, ...] = tuple(k for k, _ in PAPER_COLUMNS)

#: Tables 2 and 3 metric keys in the paper's column order, headers corrected (see module docstring).
ABLATION_COLUMNS: tuple[str, ...] = ("body_f1_macro", "body_f1_micro", "action_f1_macro", "action_f1_micro", "f1_mean")


@dataclass(frozen=True)
class ReportedRow:
    """One row the paper reports: ``values`` maps metric keys to percent."""

    name: str
    values: dict[str, float]
    source: str  # where in the paper: "Table 1"
    citation: str = ""  # the method's own reference as the paper cites it
    notes: tuple[str, ...] = field(default_factory=tuple)


def _t1(name: str, citation: str, *vals: float) -> ReportedRow:
    if len(vals) != len(TABLE1_COLUMNS):
        raise ValueError(f"{name}: {len(vals)} values for {len(TABLE1_COLUMNS)} columns")
    return ReportedRow(name, dict(zip(TABLE1_COLUMNS, vals, strict=True)), "Table 1", citation)


#: Table 1, every method except PIUmr (paper order). Venue as printed in the paper.
TABLE1_REPORTED: tuple[ReportedRow, ...] = (
    _t1("TIN", "Shao et al., 2020, AAAI", 73.26, 52.81, 85.37, 66.99, 73.26, 39.82, 52.81, 58.22),
    _t1("TimesFormer", "Bertasius et al., 2021, ICML", 69.17, 40.67, 82.67, 61.90, 69.17, 34.38, 40.67, 51.53),
    _t1("Video Swin T", "Liu et al., 2021b, CVPR", 77.95, 57.23, 87.99, 71.25, 77.95, 38.53, 57.23, 61.24),
    _t1("AAGCN", "Shi et al., 2020, T-IP", 74.13, 56.96, 84.37, 65.88, 74.13, 41.36, 56.96, 59.58),
    _t1("MS-G3D", "Liu et al., 2020, CVPR", 71.21, 52.70, 82.33, 63.16, 71.21, 38.78, 52.70, 56.46),
    _t1("CTR-GCN", "Chen et al., 2021b, ICCV", 76.01, 59.06, 86.05, 68.46, 76.01, 43.38, 59.06, 61.73),
    _t1("ST-GCN++", "Duan et al., 2022, ACM MM", 72.04, 53.78, 82.04, 62.95, 72.04, 37.52, 53.78, 56.57),
    _t1("HD-GCN", "Lee et al., 2022, ICCV", 75.76, 60.19, 86.90, 67.32, 75.76, 44.50, 60.19, 61.94),
    _t1("Koopman", "Wang et al., 2023, CVPR", 75.04, 59.70, 86.79, 66.48, 75.04, 44.57, 59.70, 61.45),
    _t1("FR-Head", "Zhou et al., 2023, CVPR", 76.35, 61.17, 86.99, 68.88, 76.35, 47.43, 61.17, 63.46),
    _t1("SkateFormer", "Do & Kim, 2025, ECCV", 75.67, 59.76, 87.27, 68.33, 75.67, 45.58, 59.76, 62.34),
    _t1("Uniformer", "Li et al., 2023, T-PAMI", 79.03, 58.89, 87.29, 71.80, 79.03, 48.01, 58.89, 64.43),
    _t1("MANet", "Guo et al., 2024, T-CSVT", 78.95, 61.33, 88.83, 72.87, 78.95, 49.22, 61.33, 65.59),
    _t1("MMN", "Gu et al., 2025b, ACM MM", 78.52, 62.71, 89.83, 71.86, 78.52, 48.27, 62.71, 65.34),
)

#: Table 1, PIUmr (Ours).
TABLE1_PIUMR: ReportedRow = _t1("PIUmr", "this paper", 80.95, 63.18, 89.87, 75.51, 80.95, 52.79, 63.18, 68.11)


def _ab(name: str, source: str, *vals: float) -> ReportedRow:
    return ReportedRow(name, dict(zip(ABLATION_COLUMNS, vals, strict=True)), source, "this paper")


#: Table 2 (TFAM x GIRL), settings a-d, columns ``ABLATION_COLUMNS``.
TABLE2: dict[str, ReportedRow] = {
    "a": _ab("TFAM off, GIRL off", "Table 2 row a", 73.74, 79.99, 52.39, 62.30, 67.11),
    "b": _ab("TFAM on, GIRL off", "Table 2 row b", 74.79, 80.45, 51.80, 62.85, 67.47),
    "c": _ab("TFAM off, GIRL on", "Table 2 row c", 74.67, 80.76, 52.46, 62.87, 67.69),
    "d": _ab("TFAM on, GIRL on (PIUmr)", "Table 2 row d", 75.51, 80.95, 52.79, 63.18, 68.11),
}

#: Table 3 (TFAM branches and fusion, GIRL on), settings a-e, columns ``ABLATION_COLUMNS``.
TABLE3: dict[str, ReportedRow] = {
    "a": _ab("no TFAM branch", "Table 3 row a", 74.67, 80.76, 52.46, 62.87, 67.69),
    "b": _ab("frequency only", "Table 3 row b", 74.79, 80.65, 52.54, 62.84, 67.71),
    "c": _ab("temporal only", "Table 3 row c", 74.58, 80.43, 52.60, 62.41, 67.51),
    "d": _ab("both, mean fusion", "Table 3 row d", 75.09, 80.84, 52.79, 62.94, 67.92),
    "e": _ab("both, consistency fusion", "Table 3 row e", 75.51, 80.95, 52.79, 63.18, 68.11),
}

#: The plain X3D baseline (TFAM off, GIRL off) has no Table 1 row; its F1 values are Table 2 row a,
#: and its Top-1 values follow from them (single-label data: Top-1 == micro-F1). Top-5 is not reported.
TABLE1_BASELINE_FROM_TABLE2: ReportedRow = ReportedRow(
    "X3D baseline",
    {**TABLE2["a"].values, "body_top1": TABLE2["a"].values["body_f1_micro"],
     "action_top1": TABLE2["a"].values["action_f1_micro"]},
    "Table 2 row a", "this paper",
    ("Top-1 values derived from Table 2 row a (Top-1 == micro-F1 for single-label data); Top-5 not reported",),
)
