"""The one checked loader of local pretrained weights, shared by every backbone family (never downloads).

``read_state`` reads a state dict from a ``.safetensors`` file or a ``torch.save`` file
(``torch.load(weights_only=True)``), opening a ``{"model_state" | "model" | "module" | "state_dict": ...}``
wrapper; ``fit_state`` checks it against the model (unexpected keys, missing keys, shapes; the classifier is
left out when its class count differs) and loads it. Every error is a one-line ``CheckpointError`` naming the
file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from piumr.errors import CheckpointError, load_error

__all__ = ["one_file", "read_state", "fit_state"]

_WRAPPERS = ("model_state", "model", "module", "state_dict")


def one_file(path: Path) -> Path:
    """``path`` when it is a file; ``CheckpointError`` for a folder or a missing path."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; this backbone takes one weights file (a folder is for VideoMAE)")
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights file not found")
    return path


def read_state(path: Path) -> dict[str, Tensor]:
    """name -> tensor of the weights file ``path`` (a wrapper dict is opened); ``CheckpointError`` naming the
    file when it cannot be read or holds no state dict."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch raise several types (header, pickle, zip, runtime)
        raise CheckpointError(f"{path}: cannot read as a state dict ({load_error(e)})") from None
    if isinstance(raw, dict):
        for wrapper in _WRAPPERS:
            if isinstance(raw.get(wrapper), dict):
                raw = raw[wrapper]
                break
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor)")
    return {str(k): v for k, v in raw.items()}


def fit_state(net: nn.Module, state: dict[str, Tensor], source: Path, name: str, classifier: Sequence[str], *,
              optional: Sequence[str] = (), max_missing: float = 0.0) -> list[str]:
    """Load ``state`` (read from ``source``) into ``net``, the backbone built as ``name``; returns the model's
    keys NOT loaded.

    The ``classifier`` keys are dropped when their shape differs (another class count: the classifier keeps
    its fresh values). ``optional`` keys may be absent; so may up to ``max_missing`` of all keys (a fraction).
    Any unexpected key, more missing keys, or a shape mismatch: ``CheckpointError`` naming ``source``.
    """
    own = net.state_dict()
    skipped = {k for k in classifier if k in state and k in own and state[k].shape != own[k].shape}
    state = {k: v for k, v in state.items() if k not in skipped}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in skipped and k not in optional]
    if unexpected or len(missing) > max_missing * len(own):
        raise CheckpointError(
            f"{source}: not a {name} state dict ({len(unexpected)} unexpected keys, e.g. {unexpected[:2]}; "
            f"{len(missing)} missing, e.g. {missing[:2]})")
    bad = [k for k, v in state.items() if own[k].shape != v.shape]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{source}: not a {name} state dict (shape mismatch for {k}: file "
                              f"{tuple(state[k].shape)}, {name} {tuple(own[k].shape)}; weights for another size?)")
    net.load_state_dict(state, strict=False)
    return [k for k in own if k not in state]
