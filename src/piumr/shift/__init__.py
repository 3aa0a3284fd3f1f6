"""The person-shift suite, an experiment of its own beside the paper's tables (``piumr.reproduce``): training data
and held-out persons per factor from ``piumr.data.synth.shift``, the trainer (``train``: in memory, through the
recipe seam ``piumr.recipe``), the augmentations of its arms and controls (``aug``), the runs and their resumable
queue (``suite``), the clustered statistics (``stats``) and the report (``report``). ``piumr reproduce shift-suite``
runs it; docs/shift_suite.md describes it."""
