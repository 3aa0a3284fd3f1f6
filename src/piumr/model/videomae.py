"""VideoMAE (ViT/16, tubelet 2) from Hugging Face ``transformers``, split for TFAM: features -> TFAM -> head.

An optional extra (``pip install "piumr[videomae]"``): ``transformers`` is
imported only when a VideoMAE backbone is built, so ``import piumr`` works
without it, and building one without it raises ``MissingExtraError`` (one line
naming the extra).

==============  ===========================================  ================================
name            model                                        own input (frames x crop)
==============  ===========================================  ================================
videomae_b      ViT-B/16: 12 blocks, hidden 768, 12 heads    16 x 224 (ImageNet mean/std)
videomae_tiny   the same code: 4 blocks, hidden 64, 2 heads  4 x 32 (tests and demos)
==============  ===========================================  ================================

The blocks are grouped into 4 stages of equal depth (ViT-B: blocks 1-3, 4-6,
7-9, 10-12); TFAM after stage s (default 4) sees the tokens (B, T'*H'*W', C)
reshaped to (B, C, T', H', W'), T' = frames / 2, H' = W' = crop / 16, and they
are flattened back after it. The embedding for GIRL is the mean of the final
tokens through ``fc_norm`` (``use_mean_pooling=True``, as
``VideoMAEForVideoClassification``); the head is dropout + linear. The
positional table (fixed sinusoids, no weights) is built for exactly the
(frames, crop) given at construction, so a model takes that input size only.

Weights are never downloaded: the model is built from a ``VideoMAEConfig``
made in code, and ``load_videomae_weights`` reads a local checkpoint (a Hugging
Face model folder or a single state-dict file).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig
from piumr.errors import CheckpointError, MissingExtraError
from piumr.model.weights import fit_state, read_state

__all__ = [
    "VideoMAESpec", "VIDEOMAE_SPECS", "PATCH", "TUBELET", "VideoMAEBackbone", "VideoMAESplit",
    "build", "videomae_split", "load_videomae_weights",
]

PATCH = 16  # spatial patch size (pixels)
TUBELET = 2  # frames per token


@dataclass(frozen=True)
class VideoMAESpec:
    """Width and depth of one VideoMAE encoder (blocks split into 4 stages of ``layers // 4``)."""

    hidden: int
    layers: int
    heads: int

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """Channels C of each stage's tokens (the same for all four)."""
        return (self.hidden,) * 4


VIDEOMAE_SPECS: dict[str, VideoMAESpec] = {
    "videomae_b": VideoMAESpec(hidden=768, layers=12, heads=12),  # MCG-NJU/videomae-base
    "videomae_tiny": VideoMAESpec(hidden=64, layers=4, heads=2),  # not a published model: CPU tests and demos
}

def _transformers() -> ModuleType:
    """``transformers``, or ``MissingExtraError`` naming the extra that installs it."""
    try:
        return importlib.import_module("transformers")  # typed the same whether or not it is installed
    except ImportError as e:
        raise MissingExtraError(
            "the VideoMAE backbones need the optional package transformers: pip install \"piumr[videomae]\"") from e


class VideoMAEBackbone(nn.Module):
    """``videomae`` (``transformers.VideoMAEModel``) + ``fc_norm`` + ``dropout`` + ``classifier``.

    Parameter names are those of ``VideoMAEForVideoClassification``, so its
    state dicts load unchanged. Built for (B, 3, frames, crop, crop) input
    only: ``frames`` a multiple of 2, ``crop`` of 16 (``ValueError`` otherwise).
    """

    def __init__(self, name: str, *, num_classes: int, frames: int, crop: int, dropout: float) -> None:
        super().__init__()
        if name not in VIDEOMAE_SPECS:
            raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(VIDEOMAE_SPECS)}")
        if frames % TUBELET or crop % PATCH:
            raise ValueError(f"{name} needs frames (--frames) divisible by {TUBELET} and crop (--crop) divisible by "
                             f"{PATCH}; got frames {frames}, crop {crop}")
        spec = VIDEOMAE_SPECS[name]
        tf = _transformers()
        config = tf.VideoMAEConfig(
            image_size=crop, patch_size=PATCH, num_channels=3, num_frames=frames, tubelet_size=TUBELET,
            hidden_size=spec.hidden, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
            intermediate_size=4 * spec.hidden, qkv_bias=True, use_mean_pooling=True, num_labels=num_classes,
            attn_implementation="sdpa")
        self.name = name
        self.frames, self.crop = frames, crop
        self.grid = (frames // TUBELET, crop // PATCH, crop // PATCH)  # (T', H', W') of the tokens
        self.videomae: Any = tf.VideoMAEModel(config)
        self.fc_norm = nn.LayerNorm(spec.hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(spec.hidden, num_classes)
        nn.init.normal_(self.classifier.weight, std=config.initializer_range)  # as transformers initialises it
        nn.init.zeros_(self.classifier.bias)
        # the fixed sinusoid table (1, T'*H'*W', C) as a buffer: it follows .to(device); not saved (no weights)
        table = self.videomae.embeddings.position_embeddings
        self.register_buffer("pos_table", table.detach().clone().to(torch.get_default_device()), persistent=False)


class VideoMAESplit:
    """Runs a ``VideoMAEBackbone`` stage by stage (holds no parameters); same interface as ``VideoSplit``.

    ``stem`` -> ``stage(1..4)`` -> ``embed`` -> ``head``; ``to_cthw``/``from_cthw``
    convert the tokens (B, N, C), N = T'*H'*W', to (B, C, T', H', W') for TFAM and back.
    """

    def __init__(self, spec: VideoMAESpec) -> None:
        self.dims = spec.dims
        per = spec.layers // 4
        self._ranges = [(i * per, (i + 1) * per) for i in range(4)]
        self._grid: tuple[int, int, int] = (0, 0, 0)

    def stem(self, net: Any, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> patch tokens + positional table (B, N, C)."""
        if tuple(x.shape[2:]) != (net.frames, net.crop, net.crop):
            raise ValueError(f"{net.name} was built for {net.frames} x {net.crop} x {net.crop} clips (its positional "
                             f"table is fixed by the input size); got {tuple(x.shape[2:])}")
        self._grid = net.grid
        tok = net.videomae.embeddings.patch_embeddings.projection(x)  # (B, C, T', H', W')
        return tok.flatten(2).transpose(1, 2) + net.pos_table.to(tok.dtype)  # type: ignore[no-any-return]

    def stage(self, net: Any, i: int, x: Tensor) -> Tensor:
        """Run the blocks of stage ``i`` (1-4) on tokens (B, N, C)."""
        lo, hi = self._ranges[i - 1]
        for layer in net.videomae.encoder.layer[lo:hi]:
            x = layer(x)
        return x

    def to_cthw(self, x: Tensor) -> Tensor:
        """Tokens (B, N, C) -> (B, C, T', H', W')."""
        t, h, w = self._grid
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w)

    def from_cthw(self, y: Tensor, like: Tensor) -> Tensor:
        """(B, C, T', H', W') -> tokens (B, N, C) (``like`` unused: no class token)."""
        return y.flatten(2).transpose(1, 2)

    def channels(self, net: Any, stage: int) -> int:
        """C of stage ``stage``'s tokens (TFAM's input width)."""
        return self.dims[stage - 1]

    def embed(self, net: Any, x: Tensor) -> Tensor:
        """Final tokens (B, N, C) -> embedding (B, C): mean over tokens, then ``fc_norm``."""
        return net.fc_norm(x.mean(1))  # type: ignore[no-any-return]

    def head(self, net: Any, emb: Tensor) -> Tensor:
        """Embedding (B, C) -> logits (B, num_classes): dropout + linear."""
        return net.classifier(net.dropout(emb))  # type: ignore[no-any-return]

    def embed_dim(self, net: Any) -> int:
        """D, the classifier's input width (the hidden size)."""
        return int(net.classifier.in_features)


def videomae_split(name: str) -> tuple[VideoMAESpec, VideoMAESplit]:
    """The spec and a fresh ``VideoMAESplit`` of backbone ``name``."""
    spec = VIDEOMAE_SPECS[name]
    return spec, VideoMAESplit(spec)


# ----------------------------------------------------------------------------------------------
# local checkpoints
# ----------------------------------------------------------------------------------------------
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: config.json fields that fix the weights' shapes, and their attribute on ``VideoMAESpec`` (or a constant)
_ARCH_FIELDS = {"hidden_size": "hidden", "num_hidden_layers": "layers", "num_attention_heads": "heads",
                "patch_size": PATCH, "tubelet_size": TUBELET}


def _check_config(folder: Path, name: str) -> None:
    """``CheckpointError`` when ``folder/config.json`` describes another model than ``name``."""
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_file}: cannot read ({type(e).__name__}: {e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_file}: expected a JSON object")
    spec = VIDEOMAE_SPECS[name]
    if cfg.get("model_type", "videomae") != "videomae":
        raise CheckpointError(f"{folder}: not a {name} checkpoint (config.json model_type {cfg['model_type']!r})")
    for field, attr in _ARCH_FIELDS.items():
        want = getattr(spec, attr) if isinstance(attr, str) else attr
        if field in cfg and cfg[field] != want:
            raise CheckpointError(f"{folder}: not a {name} checkpoint (config.json {field} {cfg[field]}, "
                                  f"{name} has {want})")


def _weights_file(path: Path, name: str) -> Path:
    """The state-dict file of ``path``: the file itself, or a model folder's weights file."""
    if path.is_dir():
        _check_config(path, name)
        for f in _WEIGHT_FILES:
            if (path / f).is_file():
                return path / f
        raise CheckpointError(f"{path}: model folder without {' or '.join(_WEIGHT_FILES)}")
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights file or folder not found")
    return path


#: keys of ``VideoMAEForPreTraining`` outside its encoder (its decoder)
_PRETRAIN_ONLY = ("decoder.", "encoder_to_decoder.", "mask_token")
#: the attention biases of published checkpoints (and of ``save_pretrained``) under transformers' names
#: (its own "videomae" checkpoint conversion mapping)
_RENAMES = ((".attention.attention.q_bias", ".attention.attention.query.bias"),
            (".attention.attention.v_bias", ".attention.attention.value.bias"))


#: original VideoMAE repository names (``modeling_finetune.py`` / ``modeling_pretrain.py``) -> transformers'
#: ``VideoMAEModel`` names, the renames of transformers' own conversion script; per block ``blocks.N.``
_ORIGINAL_BLOCK = {"norm1.": "layernorm_before.", "norm2.": "layernorm_after.", "attn.proj.": "attention.output.dense.",
                   "attn.q_bias": "attention.attention.query.bias", "attn.v_bias": "attention.attention.value.bias",
                   "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense."}
_ORIGINAL_TOP = {"patch_embed.proj.": "videomae.embeddings.patch_embeddings.projection.",
                 "norm.": "videomae.layernorm.", "fc_norm.": "fc_norm.", "head.": "classifier."}


def _is_original(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` has the original VideoMAE repository's names (``blocks.N.attn.qkv.weight``)."""
    return any(k.removeprefix("encoder.").startswith("blocks.") and k.endswith("attn.qkv.weight") for k in state)


def _from_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original VideoMAE names -> ``VideoMAEBackbone`` names; the fused ``qkv`` (3C, C) is split into query,
    key and value. The pretraining decoder (``decoder.*``, ``encoder_to_decoder``, ``mask_token``) is left
    out; an unknown name is kept as it is (and then reported as unexpected)."""
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if k.startswith(_PRETRAIN_ONLY):
            continue
        key = k.removeprefix("encoder.")
        if key.startswith("blocks."):
            _, n, rest = key.split(".", 2)
            layer = f"videomae.encoder.layer.{n}."
            if rest == "attn.qkv.weight":
                for part, w in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                    out[f"{layer}attention.attention.{part}.weight"] = w.clone()
                continue
            old = next((o for o in _ORIGINAL_BLOCK if rest.startswith(o)), None)
            out[layer + (_ORIGINAL_BLOCK[old] + rest[len(old):] if old else rest)] = v
            continue
        top = next((o for o in _ORIGINAL_TOP if key.startswith(o)), None)
        out[_ORIGINAL_TOP[top] + key[len(top):] if top else k] = v
    return out


def _own_keys(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Keys of ``VideoMAEModel`` (no prefix) or of ``VideoMAEForVideoClassification`` / ``...ForPreTraining``
    (``videomae.`` prefix) -> ``VideoMAEBackbone`` names; returns (kept, dropped). ``q_bias``/``v_bias`` are
    renamed as transformers does when it loads them. Dropped: the pretraining decoder (``decoder.*``,
    ``encoder_to_decoder``, ``mask_token``) and the encoder's final ``layernorm`` of ``use_mean_pooling=False``
    models (the mean-pooled head has its own ``fc_norm``, as VideoMAE's fine-tuning does)."""
    prefixed = any(k.startswith("videomae.") for k in state)
    kept: dict[str, Tensor] = {}
    dropped: list[str] = []
    for k, v in state.items():
        key = k if prefixed else f"videomae.{k}"
        for old, new in _RENAMES:
            if key.endswith(old):
                key = key[: -len(old)] + new
        if key.startswith(_PRETRAIN_ONLY) or key.startswith("videomae.layernorm."):
            dropped.append(k)
        else:
            kept[key] = v
    return kept, dropped


def load_videomae_weights(net: nn.Module, path: Path, name: str) -> list[str]:
    """Load a local VideoMAE checkpoint into ``net`` (a ``VideoMAEBackbone`` built as ``name``); never downloads.

    ``path``: a Hugging Face model folder (``config.json`` + ``model.safetensors``
    or ``pytorch_model.bin``; config.json, when there, must describe ``name``'s
    architecture) or one ``.safetensors`` / ``.bin`` / ``.pth`` state dict
    (``torch.load(weights_only=True)``), with ``VideoMAEModel`` keys or the
    ``videomae.``-prefixed keys of ``VideoMAEForVideoClassification`` /
    ``VideoMAEForPreTraining``, or the original VideoMAE repository's names
    (``blocks.N.attn.qkv``, converted as transformers' conversion script
    does); decoder keys are dropped. The classifier is
    re-initialised when its class count differs; ``fc_norm`` and the
    classifier keep their fresh values when the file has none (pretraining
    checkpoints). The positional table holds no weights, so a checkpoint for
    16 x 224 loads into a model for any (frames, crop). Returns the model's
    keys NOT loaded. Raises ``CheckpointError`` (one line naming the file) on a
    missing or unreadable file or a file of another model.
    """
    file = _weights_file(Path(path), name)
    raw = read_state(file)
    state, _ = _own_keys(_from_original(raw) if _is_original(raw) else raw)
    return fit_state(net, state, file, name, backbone_spec(name).classifier,
                     optional=("fc_norm.weight", "fc_norm.bias", *backbone_spec(name).classifier))


def build(cfg: ModelConfig) -> tuple[nn.Module, VideoMAESplit]:
    """The VideoMAE backbone of ``cfg`` and its split."""
    split = videomae_split(cfg.backbone)[1]
    net = VideoMAEBackbone(cfg.backbone, num_classes=cfg.num_classes, frames=cfg.frames, crop=cfg.crop,
                           dropout=cfg.dropout)
    return net, split
