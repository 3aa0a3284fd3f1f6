"""safetensors checkpoints that carry their own config and provenance.

One file holds everything needed to rebuild the model (``piumr_config`` in the
metadata) and, for ``last`` checkpoints, to resume training exactly: optimiser
tensors (``optim.*``), RNG states (``rng.*``) and the JSON parts of both in the
metadata. Nothing is pickled. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes
from torch import nn

from piumr.config import ModelConfig, TrainConfig
from piumr.errors import CheckpointError, MissingExtraError
from piumr.files import atomic_write
from piumr.model import PIUmrNet
from piumr.runtime import cpu_identity
from piumr.version import __version__

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "read_checkpoint", "load_model", "provenance"]

FORMAT = "piumr-checkpoint-v1"


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({type(e).__name__})"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def _version(pkg: str) -> str:
    try:
        return importlib_metadata.version(pkg)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Where a result came from: commit, package versions, device, host, python."""
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "piumr": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in ("torch", "torchvision", "pytorchvideo", "numpy", "safetensors")},
        "device": dev,
        "host_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "cpu": cpu_identity(),  # the CPU model and torch's kernel set: seeded CPU results differ across them
    }


@dataclass
class Checkpoint:
    """What a checkpoint file holds, read back."""

    path: Path
    config: TrainConfig
    model_state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optim_state: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)


def _flatten_optim(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optim(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, _, idx, name = key.split(".", 3)
        state.setdefault(int(idx), {})[name] = v
    for idx, sc in js["scalars"].items():
        state.setdefault(int(idx), {}).update(sc)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in js["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    js = {"python": repr(random.getstate()),
          "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}  # type: ignore[index]
    return tensors, js


def restore_rng(ckpt: Checkpoint) -> None:
    """Put the global torch / CUDA / numpy / python RNGs back as they were at save time."""
    t = ckpt.rng.get("tensors", {})
    if "rng.torch" in t:
        torch.set_rng_state(t["rng.torch"])
    cuda = [t[k] for k in sorted(k for k in t if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    js = ckpt.rng.get("json", {})
    if "python" in js:
        random.setstate(ast.literal_eval(js["python"]))
    if "numpy" in js:
        n = js["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))


def save_checkpoint(
    path: Path, model: nn.Module, config: TrainConfig, *, epoch: int, step: int,
    metrics: dict[str, float] | None = None, best_metric: float | None = None,
    optimizer: torch.optim.Optimizer | None = None, extra_tensors: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None, device: str = "cpu", with_rng: bool = False,
    trained_on: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (unwrapped, DDP's ``module``), its config and provenance atomically to ``path``.

    ``trained_on`` is what the model was trained on, as the caller knows it (``piumr.data.splits.trained_on``:
    kind, root, split, classes, head); the checkpoint stores it and reads no data.

    With ``optimizer`` / ``with_rng`` the file also resumes training exactly.
    ``extra_tensors`` (names must not start with ``model.``) and ``extra`` (JSON)
    are stored as given. Returns ``path``.
    """
    module = getattr(model, "module", model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT, "epoch": epoch, "step": step, "metrics": metrics or {},
        "best_metric": best_metric, "seed": config.seed, "provenance": provenance(device), "extra": extra or {},
        "trained_on": trained_on,
    }
    if optimizer is not None:
        ot, oj = _flatten_optim(optimizer.state_dict())
        tensors.update(ot)
        meta["optim"] = oj
    if with_rng:
        rt, rj = _rng_tensors()
        tensors.update(rt)
        meta["rng"] = rj
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    metadata = {"piumr_config": config.model_dump_json(), "piumr_meta": json.dumps(meta)}
    # serialised in memory and written by atomic_write: safetensors' own save_file writes through a temporary
    # file of its own (".tmpXXXXXX"), which a kill -9 at the wrong moment left behind in the run folder
    blob = save_bytes(tensors, metadata=metadata)
    return atomic_write(Path(path), lambda tmp: write_file(tmp, blob))


def write_file(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` (the one place a checkpoint's bytes reach the disk; tests simulate a full
    disk here)."""
    path.write_bytes(blob)


def _one_line(e: Exception) -> str:
    """The first line of ``e`` (pydantic and torch errors run over several lines)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, {tensor name: shape}) from the safetensors header alone (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None


def _parse_metadata(path: Path, md: dict[str, str]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and meta of a checkpoint's metadata; ``CheckpointError`` (one line naming the file) when
    either is missing, not JSON, of the wrong shape or of the wrong types."""
    if "piumr_config" not in md:
        raise CheckpointError(f"{path}: safetensors file without piumr config metadata (not a piumr checkpoint)")
    try:
        config = TrainConfig.model_validate_json(md["piumr_config"])
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise CheckpointError(f"{path}: invalid piumr_config metadata ({_one_line(e)})") from None
    try:
        meta = json.loads(md.get("piumr_meta", "{}"))
    except ValueError as e:
        raise CheckpointError(f"{path}: invalid piumr_meta metadata (not JSON: {_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: invalid piumr_meta metadata (a JSON object expected, found "
                              f"{type(meta).__name__})")
    for key in ("epoch", "step"):
        if key in meta and (not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0):
            raise CheckpointError(f"{path}: invalid piumr_meta metadata ({key} = {meta[key]!r}, a count expected)")
    for key in ("optim", "rng", "extra", "trained_on", "metrics"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):  # null: not recorded
            raise CheckpointError(f"{path}: invalid piumr_meta metadata ({key} is a {type(meta[key]).__name__}, "
                                  "a JSON object expected)")
    return config, meta


# model sizes in a checkpoint's config that decide how much memory building the model takes, and that the
# stored weights show as a dimension (``check_sizes`` refuses a value no stored tensor has)
_SIZES: dict[str, Callable[[ModelConfig], int | None]] = {
    "num_classes": lambda m: m.num_classes,
    "tfam.attn_dim": lambda m: m.tfam.attn_dim if m.tfam.enabled and m.tfam.temporal else None,
    "tfam.num_dct": lambda m: m.tfam.num_dct if m.tfam.enabled and m.tfam.frequency else None,
    "tfam.attn_kernel": lambda m: m.tfam.attn_kernel if m.tfam.enabled and m.tfam.frequency else None,
}


def check_sizes(path: Path, config: TrainConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config whose model would not match the tensors stored in the file, before anything is
    allocated: each size of ``_SIZES`` must be a dimension of a stored weight, then the model is built on
    the ``meta`` device (shapes only, no memory) and every parameter and buffer is compared with the file's.
    ``CheckpointError`` naming the file and the first difference."""
    stored = {k[6:]: v for k, v in shapes.items() if k.startswith("model.")}
    dims = {d for shape in stored.values() for d in shape}
    for key, get in _SIZES.items():
        value = get(config.model)
        if value is not None and value not in dims:
            raise CheckpointError(f"{path}: model.{key} = {value} in its piumr_config, but no weight stored in the "
                                  "file has that size (edited metadata?)")
    cfg = config.model.model_copy(update={"pretrained": None})
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in PIUmrNet(cfg).state_dict().items()}
    except MissingExtraError:  # its own message says which extra to install
        raise
    except (ValueError, AssertionError, RuntimeError) as e:  # e.g. attention heads that do not divide its width
        raise CheckpointError(f"{path}: its piumr_config does not describe a model that can be built "
                              f"({type(e).__name__}: {_one_line(e)})") from None
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    if missing or extra or wrong:
        what = (f"{wrong[0]} is {list(stored[wrong[0]])} in the file, {list(expected[wrong[0]])} by its config"
                if wrong else f"{len(missing)} weight(s) missing (e.g. {missing[0]})" if missing
                else f"{len(extra)} unexpected weight(s) (e.g. {extra[0]})")
        raise CheckpointError(f"{path}: weights do not fit the {cfg.backbone} model in its own config ({what})")


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a piumr checkpoint; ``CheckpointError`` naming the file if it is not one. The metadata, and the
    model sizes in it against the stored tensors (``check_sizes``), are checked from the header before any
    tensor is read or model built."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    md, shapes = _header(path)
    config, meta = _parse_metadata(path, md)
    check_sizes(path, config, shapes)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = None
    if "optim" in meta:
        try:
            optim = _unflatten_optim({k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["optim"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: invalid optimiser state in piumr_meta ({type(e).__name__}: "
                                  f"{_one_line(e)})") from None
    rng = {"tensors": {k: v for k, v in tensors.items() if k.startswith("rng.")}, "json": meta.get("rng", {})}
    meta["extra_tensors"] = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    return Checkpoint(path, config, model_state, meta, optim, rng)


def load_model(path: Path, *, expect_classes: int | None = None,
               map_location: str | torch.device = "cpu") -> tuple[PIUmrNet, Checkpoint]:
    """Rebuild the model from the checkpoint file alone; returns (model in eval mode, checkpoint). The sizes in
    its metadata are checked against the stored tensors (``check_sizes``) before the model is built."""
    ckpt = read_checkpoint(path)
    cfg = ckpt.config.model.model_copy(update={"pretrained": None})
    if expect_classes is not None and cfg.num_classes != expect_classes:
        raise CheckpointError(f"{path}: checkpoint has {cfg.num_classes} classes, this data has {expect_classes}")
    net = PIUmrNet(cfg)
    try:
        net.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the {cfg.backbone} model in its own config ({first})") from e
    return net.to(map_location).eval(), ckpt
