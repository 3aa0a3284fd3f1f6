"""Regenerate the paper's tables (1-3) and figures (4-6), plus a person-shift experiment.

* ``specs``   one spec per table / figure: rows = name + config overrides
* ``paper``   the paper's reported numbers, with sources (never mixed with measured rows)
* ``runner``  runs rows x seeds (skip finished, resume interrupted), aggregates, writes
* ``planning`` ``--plan``: what would run and its estimated GPU hours
* ``writers`` JSON + LaTeX (booktabs) tables: mean ± std, paper value and difference per cell
* ``figures`` matplotlib (Agg) PNG + PDF

Typical use::

    from piumr.reproduce import make_settings, run_many
    outs = run_many(make_settings(data="synth", preset="tiny"), ["table2", "fig5"])
"""

from piumr.reproduce.planning import estimate_gpu_hours, plan, plan_table
from piumr.reproduce.runner import (
    ExperimentOutput,
    Settings,
    expand_names,
    make_settings,
    print_result,
    run_experiment,
    run_many,
)
from piumr.reproduce.specs import ALIASES, ALL_ORDER, EXPERIMENTS, get_experiment

__all__ = [
    "ALIASES", "ALL_ORDER", "EXPERIMENTS", "ExperimentOutput", "Settings", "estimate_gpu_hours", "expand_names",
    "get_experiment", "make_settings", "plan", "plan_table", "print_result", "run_experiment", "run_many",
]
