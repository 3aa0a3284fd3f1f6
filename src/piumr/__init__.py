"""piumr: reference implementation of PIUmr (X3D + TFAM + GIRL) for person-independent
micro-action recognition.

Plug-and-play API::

    from piumr import TFAM, GIRLLoss, build_model
    tfam = TFAM(channels=192)                 # (B, C, T, H, W) -> same shape
    girl = GIRLLoss(groups=4, tau=0.07, eta=0.2, lambda_var=1.0)
    loss = girl(features, labels)             # features (B, D), labels (B,)
    out = build_model(preset="paper")(clips)  # out.logits (B, 52), out.embedding (B, 2048)
"""

from piumr.losses import GIRLLoss
from piumr.model import TFAM, build_model
from piumr.version import __version__

__all__ = ["TFAM", "GIRLLoss", "build_model", "__version__"]
