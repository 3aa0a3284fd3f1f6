"""The backbone registry: one plain-data ``BackboneSpec`` per backbone, the only place outside a backbone's own
module (``model/backbone.py``, ``model/video_backbones.py``, ``model/videomae.py``) that names it.

A spec holds what the rest of the code needs to know about a backbone without building it: its family (which
``piumr.model`` module builds and splits it), the input its Kinetics weights were made for, the stages TFAM may
follow, its measured cost (for ``piumr reproduce --plan``), its label in tables, and its classifier's
state-dict keys (re-initialised when a checkpoint's class count differs). Adding a backbone of an existing
family is its builder arguments in the family's module plus one ``BackboneSpec`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

__all__ = ["Family", "BackboneSpec", "REGISTRY", "BACKBONES", "NATIVE_INPUT", "TFAM_STAGES", "backbone_spec",
           "check_backbone", "default_tfam_stage"]

#: the model module that builds and splits a backbone: pytorchvideo X3D, torchvision video models, VideoMAE
Family = Literal["x3d", "torchvision", "videomae"]
#: torchvision's R(2+1)D-18 Kinetics-400 weights (``R2Plus1D_18_Weights.KINETICS400_V1.transforms()``)
_R21D: dict[str, tuple[float, float, float]] = {"mean": (0.43216, 0.394666, 0.37645), "std": (0.22803, 0.22145, 0.216989)}
#: ImageNet statistics: torchvision's Swin3D-T weights and VideoMAE's image processor
_IMAGENET: dict[str, tuple[float, float, float]] = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
_ALL_STAGES = (1, 2, 3, 4)
_X3D_HEAD = ("blocks.5.proj.weight", "blocks.5.proj.bias")


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone, as plain data.

    ``native_input``: (clip length, crop) of its Kinetics weights (pytorchvideo's X3D hub values,
    torchvision's weight transforms, VideoMAE-B's fine-tuned checkpoints; tiny test variants: the ``tiny``
    preset's input). ``tfam_stages``: the stages TFAM may follow; the last is the default. ``gmacs``: forward
    multiply-accumulates (G) of one clip at ``native_input``, counted with ``torch.utils.flop_counter``
    (``piumr.bench.forward_flops`` / 2). ``step_ratio``: training step time of the plain backbone over plain
    X3D-M's, each at its own input, bf16, batch 16, one H200 (``bench/gpu_backbones.sh``;
    artifacts/gpu-check/2026-11-26-h200/backbones.log). None: not measured.
    """

    name: str
    family: Family
    native_input: tuple[int, int]
    label: str
    classifier: tuple[str, ...]
    tfam_stages: tuple[int, ...] = _ALL_STAGES
    gmacs: Optional[float] = None
    step_ratio: Optional[float] = None
    paper_row: Optional[str] = None  # the Table 1 row the paper reports for this backbone
    #: the input normalisation its Kinetics weights were trained with, per RGB channel (like timm's
    #: ``PretrainedCfg``): ``(x / 255 - mean) / std``; the tiny test variants take their family's
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)  # pytorchvideo X3D, torchvision MViT
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    @property
    def default_tfam_stage(self) -> int:
        """The stage TFAM follows by default (the last allowed)."""
        return self.tfam_stages[-1]


_TV = {"r2plus1d": ("fc.weight", "fc.bias"), "swin3d": ("head.weight", "head.bias"),
       "mvit": ("head.1.weight", "head.1.bias")}
#: MViT's embedding is its class token, which no block reads after stage 4, so TFAM there would change nothing
_MVIT_STAGES = (1, 2, 3)
_VIDEOMAE_HEAD = ("classifier.weight", "classifier.bias")

REGISTRY: dict[str, BackboneSpec] = {s.name: s for s in (
    BackboneSpec("x3d_xs", "x3d", (4, 160), "X3D-XS", _X3D_HEAD),
    BackboneSpec("x3d_s", "x3d", (13, 160), "X3D-S", _X3D_HEAD),
    BackboneSpec("x3d_m", "x3d", (16, 224), "X3D-M", _X3D_HEAD, gmacs=4.73, step_ratio=1.0),
    BackboneSpec("x3d_l", "x3d", (16, 312), "X3D-L", _X3D_HEAD),
    BackboneSpec("x3d_tiny", "x3d", (4, 64), "x3d_tiny", _X3D_HEAD),  # CPU demos and tests
    BackboneSpec("x3d_mini", "x3d", (4, 64), "x3d_mini", _X3D_HEAD),  # X3D-XS widths at depth 1.0
    BackboneSpec("r2plus1d_18", "torchvision", (16, 112), "R(2+1)D-18", _TV["r2plus1d"], gmacs=40.52,
                 step_ratio=57.8 / 143.9, mean=_R21D["mean"], std=_R21D["std"]),
    BackboneSpec("swin3d_t", "torchvision", (32, 224), "Video Swin-T", _TV["swin3d"], gmacs=87.76,
                 step_ratio=218.5 / 143.9, paper_row="Video Swin T", mean=_IMAGENET["mean"],
                 std=_IMAGENET["std"]),
    BackboneSpec("mvit_v2_s", "torchvision", (16, 224), "MViTv2-S", _TV["mvit"], _MVIT_STAGES, gmacs=64.22,
                 step_ratio=263.1 / 143.9),
    BackboneSpec("r2plus1d_tiny", "torchvision", (4, 32), "r2plus1d_tiny", _TV["r2plus1d"], mean=_R21D["mean"],
                 std=_R21D["std"]),
    BackboneSpec("swin3d_tiny", "torchvision", (4, 32), "swin3d_tiny", _TV["swin3d"], mean=_IMAGENET["mean"],
                 std=_IMAGENET["std"]),
    BackboneSpec("mvit_tiny", "torchvision", (4, 32), "mvit_tiny", _TV["mvit"], _MVIT_STAGES),
    BackboneSpec("videomae_b", "videomae", (16, 224), "VideoMAE-B", _VIDEOMAE_HEAD, gmacs=180.34,
                 mean=_IMAGENET["mean"],
                 std=_IMAGENET["std"]),
    BackboneSpec("videomae_tiny", "videomae", (4, 32), "videomae_tiny", _VIDEOMAE_HEAD, mean=_IMAGENET["mean"],
                 std=_IMAGENET["std"]),
)}

BACKBONES: tuple[str, ...] = tuple(REGISTRY)
NATIVE_INPUT: dict[str, tuple[int, int]] = {n: s.native_input for n, s in REGISTRY.items()}
TFAM_STAGES: dict[str, tuple[int, ...]] = {n: s.tfam_stages for n, s in REGISTRY.items()}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def check_backbone(name: str) -> str:
    """``name`` when it is registered (a config field validator); ``ValueError`` listing the names otherwise."""
    return backbone_spec(name).name


def default_tfam_stage(backbone: str) -> int:
    """The stage TFAM follows by default on ``backbone`` (4; MViT: 3)."""
    return backbone_spec(backbone).default_tfam_stage
