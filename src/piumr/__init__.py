"""piumr: reference implementation of PIUmr (X3D + TFAM + GIRL) for person-independent
micro-action recognition.

Plug-and-play API::

    from piumr import TFAM, GIRLLoss, build_model
    tfam = TFAM(channels=192)                 # (B, C, T, H, W) -> same shape
    girl = GIRLLoss(groups=4, tau=0.07, eta=0.2, lambda_var=1.0)
    loss = girl(features, labels)             # features (B, D), labels (B,)
    out = build_model(preset="paper")(clips)  # out.logits (B, 52), out.embedding (B, 2048)

The three names are imported on first use, so ``import piumr.errors`` or ``piumr.config`` (what the
command line needs to start) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from piumr.version import __version__

if TYPE_CHECKING:
    from piumr.losses import GIRLLoss
    from piumr.model import TFAM, build_model

__all__ = ["TFAM", "GIRLLoss", "build_model", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GIRLLoss":
        from piumr.losses import GIRLLoss

        return GIRLLoss
    if name in ("TFAM", "build_model"):
        from piumr import model

        return getattr(model, name)
    raise AttributeError(f"module 'piumr' has no attribute {name!r}")
