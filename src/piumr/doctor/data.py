"""Which data root ``piumr doctor`` found, its split sizes, and whether its prepared cache verifies."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from piumr.config import SYNTH, DataConfig
from piumr.data.ma52 import PREPARED_SUFFIX, SPLITS, find_layout, read_split
from piumr.data.manifest import read_manifest
from piumr.data.prepare import PreparedCache, open_cache_if_any
from piumr.data.splits import cache_dir, resolve_root, synth_params
from piumr.data.synth.generation import split_counts, synth_key
from piumr.source import SYNTH_META, resolve_source

__all__ = ["MA52_SIZES", "data_report", "verify_cache"]

MA52_SIZES = {"train": 11250, "val": 5586, "test": 5586}
"""Clips per official MA-52 split (the projection uses these when no data root is found)."""


def verify_cache(cache: PreparedCache, hash_clips: int) -> dict[str, Any]:
    """Check a prepared cache against its manifest.

    Every listed file must exist with the manifest's byte count (a ``stat``, fast); the first ``hash_clips``
    files (manifest order; all when negative) are also re-hashed and compared with their sha256.
    ``verified`` is True when the manifest says the build completed and nothing failed.
    """
    missing, wrong_size, wrong_hash, hashed = [], [], [], 0
    for n, (key, entry) in enumerate(cache.clips.items()):
        path = cache.root / (key + PREPARED_SUFFIX)
        if not path.is_file():
            missing.append(key)
            continue
        if path.stat().st_size != int(entry["bytes"]):
            wrong_size.append(key)
            continue
        if hash_clips < 0 or n < hash_clips:
            hashed += 1
            if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                wrong_hash.append(key)
    complete = bool(cache.manifest.get("complete", False))
    return {
        "clips": len(cache.clips), "complete": complete, "short_side": cache.short_side,
        "missing": missing[:20], "num_missing": len(missing), "wrong_size": wrong_size[:20],
        "num_wrong_size": len(wrong_size), "hashed": hashed, "wrong_hash": wrong_hash[:20],
        "verified": complete and not (missing or wrong_size or wrong_hash),
    }


def data_report(cfg: DataConfig, hash_clips: int = 64, generate: bool = True) -> dict[str, Any]:
    """Root (``"synth"`` is generated when absent, as training does, if ``generate``), split sizes, cache
    verification; for ``"synth"`` also ``generated`` (False: the set is not there yet and its split sizes are
    those it will have).

    Raises ``DatasetError`` for a root that does not exist or is not an MA-52-format folder or a manifest.
    """
    src = resolve_source(cfg.root)
    if src.kind == "synth":
        final = cache_dir() / SYNTH / synth_key(**synth_params(cfg))
        if not generate and not (final / SYNTH_META).is_file():
            counts = split_counts(**synth_params(cfg))
            return {"root": cfg.root, "path": str(final), "kind": SYNTH, "generated": False,
                    "splits": {s: counts[s] for s in SPLITS}, "cache": None}
    root = resolve_root(cfg, progress=False)
    if src.kind == "manifest":  # rows per split value ("all" without a split column); its folder may be a cache
        man = read_manifest(root, check_files=False)
        splits = {s or "all": man.splits.count(s) for s in dict.fromkeys(man.splits)}
        cache = open_cache_if_any(root.parent)
    else:
        layout = find_layout(root)
        splits = {s: len(read_split(root, s, check_files=False)) for s in SPLITS if s in layout.lists}
        cache = open_cache_if_any(root)
    return {
        "root": cfg.root, "path": str(root), "kind": SYNTH if src.kind == "synth" else (
            ("prepared " if cache is not None else "") + "manifest" if src.kind == "manifest" else
            "prepared cache" if cache is not None else "raw videos"),
        "splits": splits,
        "cache": None if cache is None else verify_cache(cache, hash_clips),
        **({"generated": True} if src.kind == "synth" else {}),
    }
