"""X3D backbone, TFAM and the full PIUmr network."""

from piumr.errors import CheckpointError
from piumr.model.backbone import build_x3d, load_kinetics_checkpoint
from piumr.model.piumr import PIUmrNet, PIUmrOutput, attach_tfam, build_model, build_tfam
from piumr.model.tfam import TFAM

__all__ = [
    "TFAM", "PIUmrNet", "PIUmrOutput", "build_model", "build_tfam", "attach_tfam",
    "build_x3d", "load_kinetics_checkpoint", "CheckpointError",
]
