"""VideoMAE backbones (optional extra ``videomae``): shapes, stages, TFAM, weights, checkpoints, CLI, plan.

Tests that build a model need ``transformers`` and skip without it; the missing-package error and the lazy
import are tested either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from piumr import build_model
from piumr.checkpoint import CheckpointError, load_model, save_checkpoint
from piumr.config import (
    BACKBONES, NATIVE_INPUT, TFAM_STAGES, TFAMConfig, backbone_overrides, get_preset, with_overrides,
)
from piumr.errors import MissingExtraError
from piumr.model import PIUmrNet
from piumr.model.videomae import VIDEOMAE_SPECS, VideoMAESplit, load_videomae_weights

SMALL_TFAM = TFAMConfig(num_dct=4, dct_kernel=3, attn_dim=8, attn_heads=2)
needs_transformers = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("transformers") is None, reason="optional extra videomae not installed")


def _model(name: str = "videomae_tiny", stage: int = 4, frames: int = 4, crop: int = 32, enabled: bool = True,
           **kw: Any) -> PIUmrNet:
    tf = SMALL_TFAM.model_copy(update={"stage": stage, "enabled": enabled})
    return build_model(preset="tiny", backbone=name, num_classes=7, frames=frames, crop=crop, tfam=tf, **kw)


def _hf_config(**kw: Any) -> Any:
    """transformers' VideoMAEConfig of videomae_tiny at 4 x 32."""
    from transformers import VideoMAEConfig

    s = VIDEOMAE_SPECS["videomae_tiny"]
    base = dict(image_size=32, num_frames=4, hidden_size=s.hidden, num_hidden_layers=s.layers,
                num_attention_heads=s.heads, intermediate_size=4 * s.hidden, use_mean_pooling=True)
    return VideoMAEConfig(**{**base, **kw})


def test_lists_and_defaults() -> None:
    assert {"videomae_b", "videomae_tiny"} <= set(BACKBONES)
    assert NATIVE_INPUT["videomae_b"] == (16, 224) and NATIVE_INPUT["videomae_tiny"] == (4, 32)
    assert TFAM_STAGES["videomae_b"] == (1, 2, 3, 4)
    paper = with_overrides(get_preset("paper"), backbone_overrides("videomae_b", native_input=True))
    assert paper.model.tfam.stage == 4
    b = VIDEOMAE_SPECS["videomae_b"]
    assert (b.hidden, b.layers, b.heads) == (768, 12, 12)


def test_stages_are_four_of_equal_depth() -> None:
    assert VideoMAESplit(VIDEOMAE_SPECS["videomae_b"])._ranges == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert VideoMAESplit(VIDEOMAE_SPECS["videomae_tiny"])._ranges == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_import_piumr_leaves_transformers_unimported() -> None:
    code = ("import sys, piumr, piumr.model, piumr_cli.main; from piumr import build_model; "
            "build_model(preset='tiny'); assert 'transformers' not in sys.modules, 'imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_missing_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "piumr\[videomae\]"'):
        _model()
    from piumr_cli.main import app

    res = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--backbone", "videomae_tiny",
                                   "--epochs", "1", "--quiet", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and 'pip install "piumr[videomae]"' in lines[-1], res.output
    assert "Traceback" not in res.output


@needs_transformers
def test_shapes_and_input_size() -> None:
    torch.manual_seed(0)
    m = _model().train()
    out = m(torch.randn(2, 3, 4, 32, 32))
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 64) == (2, m.embed_dim)
    assert torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match=r"built for 4 x 32 x 32 clips"):
        m(torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match=r"crop \(--crop\) divisible by 16; got frames 4, crop 40"):
        _model(crop=40)


@needs_transformers
def test_tokens_map_to_their_patches() -> None:
    """Token n = t*H'*W' + h*W' + w of the stem is the (t, h, w) patch, so to_cthw is the true layout."""
    torch.manual_seed(0)
    m = _model(frames=8, crop=64, enabled=False).eval()
    sp: Any = m._split
    x = torch.randn(2, 3, 8, 64, 64)
    tok = sp.stem(m.backbone, x) - m.backbone.pos_table
    grid = m.backbone.videomae.embeddings.patch_embeddings.projection(x)  # (B, C, 4, 4, 4)
    torch.testing.assert_close(sp.to_cthw(tok), grid)
    torch.testing.assert_close(sp.from_cthw(sp.to_cthw(tok), tok), tok)


@needs_transformers
@pytest.mark.parametrize("stage", TFAM_STAGES["videomae_tiny"])
def test_tfam_at_each_stage_gets_gradient(stage: int) -> None:
    torch.manual_seed(stage)
    m = _model(stage=stage, frames=8).train()  # T' = 4 tokens in time, 2 x 2 in space
    assert m.tfam is not None
    out = m(torch.randn(2, 3, 8, 32, 32))
    ((out.logits * torch.randn_like(out.logits)).sum() + out.embedding.pow(2).mean()).backward()
    missing = [n for n, p in m.tfam.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"stage {stage}: no gradient for {missing}"


@needs_transformers
def test_without_tfam_equals_transformers_classifier() -> None:
    """TFAM off, eval: the split forward is VideoMAEForVideoClassification's forward on the same weights."""
    from transformers import VideoMAEForVideoClassification

    torch.manual_seed(0)
    m = _model(enabled=False).eval()
    ref = VideoMAEForVideoClassification(_hf_config(num_labels=7)).eval()
    ref.load_state_dict(m.backbone.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ours, theirs = m(x).logits, ref(pixel_values=x.transpose(1, 2)).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@needs_transformers
def test_videomae_b_has_transformers_layout() -> None:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    with torch.device("meta"):
        ours = _model("videomae_b", frames=16, crop=224, enabled=False).backbone.state_dict()
        ref = VideoMAEForVideoClassification(VideoMAEConfig(num_labels=7)).state_dict()
    assert set(ours) == set(ref) and all(ours[k].shape == ref[k].shape for k in ref)
    n = sum(v.numel() for v in ours.values())
    assert 86e6 < n < 87e6, n  # ViT-B/16 with a 7-class head


@needs_transformers
def test_checkpoint_round_trip_and_eval_determinism(tmp_path: Path) -> None:
    cfg = with_overrides(get_preset("tiny"), {**backbone_overrides("videomae_tiny", native_input=False),
                                             "model.num_classes": 7})
    torch.manual_seed(0)
    m = PIUmrNet(cfg.model).eval()
    x = torch.randn(2, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
    with torch.no_grad():
        a, b = m(x), m(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embedding, b.embedding)
    path = save_checkpoint(tmp_path / "m.safetensors", m, cfg, epoch=0, step=0)
    m2, ck = load_model(path)
    assert ck.config.model.backbone == "videomae_tiny"
    with torch.no_grad():
        assert torch.equal(m2(x).logits, a.logits)


def _equal_encoder(m: PIUmrNet, ref: dict[str, torch.Tensor], prefix: str) -> bool:
    own = m.backbone.state_dict()
    keys = [k for k in ref if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(own["videomae." + k[len(prefix):]], ref[k]) for k in keys)


@needs_transformers
def test_local_weights_in_every_layout(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from transformers import VideoMAEForPreTraining, VideoMAEForVideoClassification

    torch.manual_seed(1)
    # 1. a Hugging Face model folder of a Kinetics-400 classifier: encoder and fc_norm load, classifier re-initialised
    cls = VideoMAEForVideoClassification(_hf_config(num_labels=400))
    with torch.no_grad():
        cls.fc_norm.weight.uniform_()
    cls.save_pretrained(tmp_path / "k400")
    assert (tmp_path / "k400" / "config.json").is_file()
    m = _model(pretrained=tmp_path / "k400")
    ref = cls.state_dict()
    assert _equal_encoder(m, ref, "videomae.")
    assert torch.equal(m.backbone.fc_norm.weight, ref["fc_norm.weight"])
    assert m.backbone.classifier.weight.shape == (7, 64)
    # 2. VideoMAEModel keys (no prefix) in one .safetensors file
    enc = {k[len("videomae."):]: v.contiguous() for k, v in ref.items() if k.startswith("videomae.")}
    save_file(enc, str(tmp_path / "enc.safetensors"))
    assert _equal_encoder(_model(pretrained=tmp_path / "enc.safetensors"), ref, "videomae.")
    # 3. pretraining keys (encoder + decoder, use_mean_pooling=False) in a .bin: decoder and layernorm dropped
    pre = VideoMAEForPreTraining(_hf_config(use_mean_pooling=False, decoder_hidden_size=32,
                                            decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                            decoder_intermediate_size=64)).state_dict()
    assert any(k.startswith("decoder.") for k in pre) and "videomae.layernorm.weight" in pre
    torch.save(pre, tmp_path / "pretrain.bin")
    m = _model(pretrained=tmp_path / "pretrain.bin")
    assert _equal_encoder(m, {k: v for k, v in pre.items() if not k.startswith("videomae.layernorm.")}, "videomae.")
    # 4. a {"model": state} wrapper in a .pth; load_videomae_weights reports what it did not load
    torch.save({"model": enc}, tmp_path / "wrapped.pth")
    m = _model(enabled=False)
    assert load_videomae_weights(m.backbone, tmp_path / "wrapped.pth", "videomae_tiny") == [
        "fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"]
    assert _equal_encoder(m, ref, "videomae.")


@needs_transformers
def test_wrong_weights_are_one_clear_error(tmp_path: Path) -> None:
    swin = build_model(preset="tiny", backbone="swin3d_tiny", num_classes=7).backbone.state_dict()
    torch.save(swin, tmp_path / "swin.pth")
    with pytest.raises(CheckpointError, match=r"swin\.pth: not a videomae_tiny state dict \(\d+ unexpected keys"):
        _model(pretrained=tmp_path / "swin.pth")
    tiny = dict(_model().backbone.state_dict())
    torch.save(tiny, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"tiny\.pth: not a videomae_b state dict \(0 unexpected keys, e\.g\. "
                                              r"\[\]; 120 missing"):
        with torch.device("meta"):
            _model("videomae_b", frames=16, crop=224, pretrained=tmp_path / "tiny.pth")
    tiny["videomae.embeddings.patch_embeddings.projection.weight"] = torch.randn(64, 3, 1, 16, 16)  # tubelet 1
    torch.save(tiny, tmp_path / "tubelet1.pth")
    with pytest.raises(CheckpointError, match=r"tubelet1\.pth: not a videomae_tiny state dict \(shape mismatch for "
                                              r"videomae\.embeddings\.patch_embeddings\.projection\.weight"):
        _model(pretrained=tmp_path / "tubelet1.pth")
    (tmp_path / "large").mkdir()
    (tmp_path / "large" / "config.json").write_text(json.dumps({"model_type": "videomae", "hidden_size": 1024}))
    with pytest.raises(CheckpointError, match=r"large: not a videomae_tiny checkpoint \(config.json hidden_size 1024"):
        _model(pretrained=tmp_path / "large")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model folder without model.safetensors or pytorch_model.bin"):
        _model(pretrained=tmp_path / "empty")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: cannot read"):
        _model(pretrained=tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        _model(pretrained=tmp_path / "nope.pth")
    from piumr_cli.main import app

    res = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--backbone", "videomae_tiny",
                                   "--pretrained", str(tmp_path / "swin.pth"), "--epochs", "1", "--quiet",
                                   "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "not a videomae_tiny state dict" in res.output and "Traceback" not in res.output


@needs_transformers
def test_cli_train_evaluate_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr_cli.main import app
    from piumr.config import PRESETS
    from piumr.data.splits import load_split

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--backbone", "videomae_tiny",
                              "--epochs", "1", "--max-steps-per-epoch", "2", "--quiet", "--device", "cpu",
                              "--out", str(run)])
    assert res.exit_code == 0, res.output
    ck = run / "best.safetensors"
    assert ck.is_file()
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(ck), "--split", "val", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (run / "eval-val" / "metrics.json").is_file()
    clip = load_split(PRESETS["tiny"].data, "val")[0].path
    res = runner.invoke(app, ["predict", str(clip), "--checkpoint", str(ck), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output[res.output.index("{"):])
    assert len(payload["top5"]) == 5


@needs_transformers
def test_plan_macs_and_table1_rows(tmp_path: Path) -> None:
    from piumr.bench import _build, forward_flops
    from piumr.backbones import REGISTRY
    from piumr.reproduce.planning import plan
    from piumr.reproduce.runner import experiment_spec, jobs_for, make_settings

    cfg = with_overrides(get_preset("paper"), backbone_overrides("videomae_b", native_input=True))
    assert forward_flops(cfg.model) / 2e9 == pytest.approx(REGISTRY["videomae_b"].gmacs, abs=0.01)
    s = make_settings(data="synth", preset="paper", out=tmp_path, table1_with=("videomae_b",))
    spec = experiment_spec(s, "table1")
    assert [r.key for r in spec.rows][-2:] == ["videomae_b", "videomae_b+piumr"]
    assert spec.rows[-1].label == "VideoMAE-B + TFAM + GIRL"
    ours = {j.row.key: j for j in jobs_for(s, spec)}["videomae_b+piumr"].cfg
    assert (ours.model.frames, ours.model.crop, ours.model.tfam.stage) == (16, 224, 4)
    rows = {r.row: r for r in plan(s, ["table1"])}
    ratio = REGISTRY["videomae_b"].gmacs / REGISTRY["x3d_m"].gmacs  # type: ignore[operator]
    assert rows["videomae_b"].paper_gpu_hours == pytest.approx(ratio * rows["x3d"].paper_gpu_hours)
    tiny = with_overrides(get_preset("smoke"), backbone_overrides("videomae_tiny", native_input=False))
    net, girl = _build(tiny, "x3d")  # the plain backbone: the wrapper with TFAM off
    assert isinstance(net, PIUmrNet) and net.tfam is None and not girl


def _to_original(state: dict[str, torch.Tensor], *, pretrain: bool) -> dict[str, torch.Tensor]:
    """A VideoMAEBackbone state dict under the original VideoMAE repository's names (the inverse of
    transformers' conversion script): fused qkv, q_bias/v_bias; pretraining files prefix ``encoder.`` and add
    the encoder's final norm and a decoder."""
    out: dict[str, torch.Tensor] = {}
    layers = {k.split(".")[3] for k in state if k.startswith("videomae.encoder.layer.")}
    names = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
    for n in layers:
        src = f"videomae.encoder.layer.{n}."
        att = src + "attention.attention."
        out[f"blocks.{n}.attn.qkv.weight"] = torch.cat([state[f"{att}{p}.weight"] for p in ("query", "key", "value")])
        out[f"blocks.{n}.attn.q_bias"] = state[att + "query.bias"]
        out[f"blocks.{n}.attn.v_bias"] = state[att + "value.bias"]
        for new, old in names.items():
            for wb in ("weight", "bias"):
                out[f"blocks.{n}.{old}.{wb}"] = state[f"{src}{new}.{wb}"]
    for wb in ("weight", "bias"):
        out[f"patch_embed.proj.{wb}"] = state[f"videomae.embeddings.patch_embeddings.projection.{wb}"]
    if not pretrain:
        return {**out, **{k: v for k, v in state.items() if k.startswith("fc_norm.")},
                "head.weight": torch.randn(400, 64), "head.bias": torch.randn(400)}
    out = {f"encoder.{k}": v for k, v in out.items()}
    return {**out, "encoder.norm.weight": torch.ones(64), "encoder.norm.bias": torch.zeros(64),
            "encoder_to_decoder.weight": torch.randn(32, 64), "mask_token": torch.zeros(1, 1, 32),
            "decoder.blocks.0.attn.qkv.weight": torch.randn(96, 32), "decoder.head.weight": torch.randn(1536, 32)}


@needs_transformers
@pytest.mark.parametrize("pretrain", [False, True])
def test_original_repository_layout_loads(pretrain: bool, tmp_path: Path) -> None:
    torch.manual_seed(2)
    src = _model(enabled=False).eval()
    with torch.no_grad():
        for p in src.backbone.parameters():
            p.uniform_(-0.5, 0.5)
    state = src.backbone.state_dict()
    torch.save({"module" if pretrain else "model": _to_original(state, pretrain=pretrain)}, tmp_path / "orig.pth")
    m = _model(enabled=False, pretrained=tmp_path / "orig.pth").eval()
    own = m.backbone.state_dict()
    enc = [k for k in state if k.startswith("videomae.")]
    assert all(torch.equal(own[k], state[k]) for k in enc)
    assert torch.equal(own["fc_norm.weight"], state["fc_norm.weight"]) != pretrain  # pretraining: fresh fc_norm
    if not pretrain:  # the same encoder and fc_norm: the same embedding
        x = torch.randn(2, 3, 4, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(m(x).embedding, src(x).embedding)


@pytest.mark.gpu
@needs_transformers
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_videomae_b_bf16_step_reaches_tfam() -> None:
    """videomae_b at its own 16 x 224 input, bf16 autocast as training uses it: finite loss, gradient in TFAM."""
    torch.manual_seed(0)
    m = _model("videomae_b", frames=16, crop=224).cuda().train()
    assert m.tfam is not None
    x = torch.randn(2, 3, 16, 224, 224, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(x)
        loss = torch.nn.functional.cross_entropy(out.logits.float(), torch.tensor([0, 1], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss) and out.embedding.shape == (2, 768)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.tfam.parameters())
