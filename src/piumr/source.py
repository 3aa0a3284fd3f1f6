"""Which kind of data a ``--data`` value (``DataConfig.root``) names, decided here and nowhere else.

Every command, the doctor and the reproduce runner ask :func:`resolve_source` (as pytorchvideo resolves a data
path once, in ``LabeledVideoPaths.from_path``) and branch on the ``kind`` it returns:

- ``"synth"``: the value ``synth``: the generated synthetic set, made on demand in the cache
  (``piumr.data.splits.resolve_root``);
- ``"manifest"``: a ``.csv`` path that is not a folder: a manifest and its ``classes.csv``
  (``piumr.data.manifest``; a missing file is still this kind, and reading it names the file);
- ``"generated"``: a folder ``piumr synth`` wrote (its ``synth_meta.json``), read as an MA-52 folder;
- ``"cache"``: a prepared frame cache (its ``piumr_manifest.json``; ``piumr.data.prepare``);
- ``"ma52"``: any other folder, read in MA-52's layout (``piumr.data.ma52``);
- ``"missing"``: no folder there (nothing, or a file that is not a ``.csv``).

The module imports nothing heavy, so the command line resolves a source before it loads torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from piumr.config import SYNTH

__all__ = ["CACHE_MANIFEST", "SYNTH_META", "DataKind", "DataSource", "resolve_source", "is_synth_tag"]

DataKind = Literal["synth", "manifest", "generated", "cache", "ma52", "missing"]
#: the file a generated dataset's root holds (``piumr.data.synth.generate``)
SYNTH_META = "synth_meta.json"
#: the file a prepared frame cache's root holds (``piumr.data.prepare``)
CACHE_MANIFEST = "piumr_manifest.json"


@dataclass(frozen=True)
class DataSource:
    """A resolved ``--data`` value: ``root`` as given, its ``kind`` and ``path`` (the value with ``~``
    expanded; for ``"synth"`` the generated set's folder comes from ``piumr.data.splits.resolve_root``)."""

    root: str
    kind: DataKind
    path: Path

    @property
    def synthetic(self) -> bool:
        """Synthetic data: ``--data synth`` or a folder ``piumr synth`` wrote."""
        return self.kind in ("synth", "generated")

    @property
    def config_root(self) -> str:
        """The value a config stores: ``synth`` as it is, a path with ``~`` expanded."""
        return self.root if self.kind == "synth" else str(self.path)

    @property
    def tag(self) -> str:
        """The folder name of this source's results: ``synth``, else the data folder's (or manifest's) name."""
        return SYNTH if self.kind == "synth" else (self.path.resolve().name or "data")


def resolve_source(root: str | Path) -> DataSource:
    """The kind of data ``root`` names (module docstring); reads only whether files are there."""
    given = str(root)
    path = Path(root).expanduser()
    if given == SYNTH:
        return DataSource(given, "synth", path)
    if path.suffix.lower() == ".csv" and not path.is_dir():
        return DataSource(given, "manifest", path)
    if not path.is_dir():
        return DataSource(given, "missing", path)
    if (path / SYNTH_META).is_file():
        return DataSource(given, "generated", path)
    if (path / CACHE_MANIFEST).is_file():
        return DataSource(given, "cache", path)
    return DataSource(given, "ma52", path)


def is_synth_tag(tag: str) -> bool:
    """Whether a results folder's name (``DataSource.tag``, ``-<preset>`` appended) is the synthetic set's."""
    return tag == SYNTH or tag.startswith(f"{SYNTH}-")
