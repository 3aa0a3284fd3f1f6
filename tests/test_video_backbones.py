"""torchvision video backbones: shapes, TFAM at every allowed stage, weights, checkpoints, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from piumr import build_model
from piumr.checkpoint import CheckpointError, load_model, save_checkpoint
from piumr.config import (
    BACKBONES, NATIVE_INPUT, TFAM_STAGES, TFAMConfig, backbone_overrides, get_preset, with_overrides,
)
from piumr.model import PIUmrNet
from piumr.backbones import REGISTRY
from piumr.model.video_backbones import VIDEO_SPECS

TINY = ["r2plus1d_tiny", "swin3d_tiny", "mvit_tiny"]
FULL = ["r2plus1d_18", "swin3d_t", "mvit_v2_s"]
SMALL_TFAM = TFAMConfig(num_dct=4, dct_kernel=3, attn_dim=8, attn_heads=2)
EMBED = {"r2plus1d_tiny": 512, "swin3d_tiny": 128, "mvit_tiny": 128,
         "r2plus1d_18": 512, "swin3d_t": 768, "mvit_v2_s": 768}
# input (frames, crop) that leaves >= 4 frames and >= 2x2 positions where TFAM runs, so that every TFAM
# parameter can receive a gradient (R(2+1)D halves T in stages 2-4; Swin and MViT halve T once, in the stem)
GRAD_INPUT = {"r2plus1d": (16, 32), "swin3d": (8, 64), "mvit": (8, 32)}


def _model(name: str, stage: int, frames: int = 4, crop: int = 32, enabled: bool = True) -> PIUmrNet:
    tf = SMALL_TFAM.model_copy(update={"stage": stage, "enabled": enabled})
    return build_model(preset="tiny", backbone=name, num_classes=7, frames=frames, crop=crop, tfam=tf)


def test_backbone_lists_agree() -> None:
    assert set(VIDEO_SPECS) <= set(BACKBONES)
    assert set(NATIVE_INPUT) == set(BACKBONES) == set(TFAM_STAGES)
    assert NATIVE_INPUT["swin3d_t"] == (32, 224) and NATIVE_INPUT["r2plus1d_18"] == (16, 112)


@pytest.mark.parametrize("name", TINY + FULL)
def test_shapes(name: str) -> None:
    torch.manual_seed(0)
    m = _model(name, TFAM_STAGES[name][-1]).train()
    out = m(torch.randn(2, 3, 4, 32, 32))
    assert out.logits.shape == (2, 7)
    assert out.embedding.shape == (2, EMBED[name]) == (2, m.embed_dim)
    assert torch.isfinite(out.logits).all()


_STAGE_CASES = [
    pytest.param(n, st, marks=pytest.mark.slow) if (n, st) == ("r2plus1d_tiny", 4) else (n, st)
    for n in TINY for st in TFAM_STAGES[n]
]


@pytest.mark.parametrize(("name", "stage"), _STAGE_CASES)
def test_tfam_at_each_allowed_stage_gets_gradient(name: str, stage: int) -> None:
    frames, crop = GRAD_INPUT[VIDEO_SPECS[name].family]
    if (name, stage) == ("r2plus1d_tiny", 4):
        frames = 32  # T is 4 after stage 3, 2 after stage 4
    torch.manual_seed(stage)
    m = _model(name, stage, frames, crop).train()
    assert m.tfam is not None
    out = m(torch.randn(2, 3, frames, crop, crop))
    w = torch.randn_like(out.logits)
    ((out.logits * w).sum() + out.embedding.pow(2).mean()).backward()
    missing = [n for n, p in m.tfam.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"{name} stage {stage}: no gradient for {missing}"


def test_mvit_refuses_tfam_after_its_last_stage() -> None:
    with pytest.raises(ValueError, match="not allowed for mvit_tiny"):
        _model("mvit_tiny", 4)


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip_and_eval_determinism(name: str, tmp_path: Path) -> None:
    cfg = with_overrides(get_preset("tiny"), {**backbone_overrides(name, native_input=False),
                                             "model.num_classes": 7})
    assert cfg.model.tfam.stage == TFAM_STAGES[name][-1]
    torch.manual_seed(0)
    m = PIUmrNet(cfg.model).eval()
    x = torch.randn(2, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
    with torch.no_grad():
        a, b = m(x), m(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embedding, b.embedding)
    path = save_checkpoint(tmp_path / "m.safetensors", m, cfg, epoch=0, step=0)
    m2, ck = load_model(path)
    assert ck.config.model.backbone == name
    with torch.no_grad():
        assert torch.equal(m2(x).logits, a.logits)


def test_checkpoint_of_another_backbone_is_refused(tmp_path: Path) -> None:
    cfg = with_overrides(get_preset("tiny"), backbone_overrides("swin3d_tiny", native_input=False))
    path = save_checkpoint(tmp_path / "m.safetensors", PIUmrNet(cfg.model), cfg, epoch=0, step=0)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        md = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    other = with_overrides(cfg, {"model.backbone": "mvit_tiny", "model.tfam.stage": 3})
    md["piumr_config"] = other.model_dump_json()
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata=md)
    with pytest.raises(CheckpointError, match="do not fit the mvit_tiny model"):
        load_model(tmp_path / "x.safetensors")


@pytest.mark.parametrize("name", TINY)
def test_local_torchvision_weights_load(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = _model(name, TFAM_STAGES[name][-1], enabled=False)
    state = dict(src.backbone.state_dict())
    cls = REGISTRY[name].classifier
    state[cls[0]] = torch.randn(400, state[cls[0]].shape[1])  # a Kinetics-400 classifier
    state[cls[1]] = torch.randn(400)
    f = tmp_path / f"{name}.pth"
    torch.save(state, f)
    m = build_model(preset="tiny", backbone=name, num_classes=7, pretrained=f,
                    tfam=SMALL_TFAM.model_copy(update={"stage": TFAM_STAGES[name][-1]}))
    own = m.backbone.state_dict()
    loaded = [k for k in state if k not in cls]
    assert loaded and all(torch.equal(own[k], state[k]) for k in loaded)
    assert own[cls[0]].shape[0] == 7


def test_mismatched_weights_are_one_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "swin.pth"
    torch.save(_model("swin3d_tiny", 4, enabled=False).backbone.state_dict(), f)
    with pytest.raises(CheckpointError, match=r"swin\.pth: not a mvit_tiny state dict"):
        build_model(preset="tiny", backbone="mvit_tiny", num_classes=7, pretrained=f,
                    tfam=SMALL_TFAM.model_copy(update={"stage": 3}))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_model(preset="tiny", backbone="swin3d_tiny", pretrained=junk)
    with pytest.raises(CheckpointError, match="not found"):
        build_model(preset="tiny", backbone="swin3d_tiny", pretrained=tmp_path / "nope.pth")
    for name in ("swin3d_tiny", "x3d_tiny"):  # a folder is a VideoMAE model's form, not these backbones'
        with pytest.raises(CheckpointError, match="is a folder; this backbone takes one weights file"):
            build_model(preset="tiny", backbone=name, pretrained=tmp_path)


def test_native_input_only_for_paper_preset() -> None:
    from piumr_cli.flags import build_config as _cfg

    assert (_cfg("paper", {}, "swin3d_t").model.frames, _cfg("paper", {}, "swin3d_t").model.crop) == (32, 224)
    tiny = _cfg("tiny", {"model.frames": None}, "swin3d_t")
    assert (tiny.model.frames, tiny.model.crop) == (4, 32)
    assert _cfg("paper", {"model.frames": 8}, "mvit_v2_s").model.frames == 8
    assert _cfg("paper", {}, "mvit_v2_s").model.tfam.stage == 3


@pytest.mark.parametrize("name", TINY)
def test_cli_train_evaluate_predict(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr_cli.main import app
    from piumr.config import PRESETS
    from piumr.data.splits import load_split

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--backbone", name, "--epochs", "1",
                              "--max-steps-per-epoch", "2", "--quiet", "--device", "cpu", "--out", str(run)])
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


# ----------------------------------------------------------------------------------------------
# reproduce: Table 1 rows on another backbone, --backbone
# ----------------------------------------------------------------------------------------------
def test_table1_with_swin_rows(tmp_path: Path) -> None:
    from piumr.reproduce import paper
    from piumr.reproduce.runner import experiment_spec, jobs_for, make_settings

    s = make_settings(data="synth", preset="paper", out=tmp_path, table1_with=("swin3d_t",))
    spec = experiment_spec(s, "table1")
    assert [r.key for r in spec.rows] == ["x3d", "piumr", "swin3d_t", "swin3d_t+piumr"]
    jobs = {j.row.key: j for j in jobs_for(s, spec)}
    plain, ours = jobs["swin3d_t"].cfg, jobs["swin3d_t+piumr"].cfg
    assert plain.model.backbone == ours.model.backbone == "swin3d_t"
    assert (ours.model.frames, ours.model.crop) == (32, 224)  # torchvision's Swin3D-T Kinetics clip
    assert not plain.model.tfam.enabled and not plain.girl.enabled
    assert ours.model.tfam.enabled and ours.girl.enabled and ours.model.tfam.stage == 4
    assert jobs["x3d"].cfg.model.backbone == "x3d_m"  # the X3D rows are unchanged
    assert spec.rows[2].paper is not None and spec.rows[2].paper.name == "Video Swin T"
    assert any(r.name == "Video Swin T" for r in spec.reported)  # the paper's row stays, labelled reported
    assert len({j.run_dir for j in jobs.values()}) == 4
    smoke = make_settings(data="synth", preset="smoke", out=tmp_path, table1_with=("swin3d_t",))
    assert jobs_for(smoke, experiment_spec(smoke, "table1"))[2].cfg.model.frames == 8  # the preset's input
    with pytest.raises(ValueError, match="non-X3D backbone"):
        make_settings(data="synth", table1_with=("x3d_s",))
    assert paper.TABLE1_REPORTED  # reported rows untouched


def test_table1_with_plan_scales_the_estimate(tmp_path: Path) -> None:
    from piumr.reproduce.planning import backbone_cost_ratio, plan
    from piumr.reproduce.runner import make_settings

    rows = {r.row: r for r in plan(make_settings(data="synth", out=tmp_path, table1_with=("swin3d_t",)), ["table1"])}
    ratio = backbone_cost_ratio("swin3d_t")
    assert 1.0 < ratio < 2.0  # measured on an H200: 218.5 / 143.9 ms per step
    assert backbone_cost_ratio("x3d_s") == 1.0  # other X3D sizes are not scaled
    assert rows["swin3d_t"].paper_gpu_hours == pytest.approx(ratio * rows["x3d"].paper_gpu_hours)
    assert rows["swin3d_t+piumr"].paper_gpu_hours == pytest.approx(ratio * rows["piumr"].paper_gpu_hours)


def test_table1_with_cli_plan_and_bad_backbone(tmp_path: Path) -> None:
    from piumr_cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["reproduce", "table1", "--data", "synth", "--with", "swin3d_t", "--plan",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "swin3d_t+piumr" in res.output and "4 (row, seed) entries" in res.output
    assert not (tmp_path / "runs").exists()
    res = runner.invoke(app, ["reproduce", "table1", "--data", "synth", "--with", "resnet", "--plan"])
    assert res.exit_code == 2 and "non-X3D backbone" in res.output
    res = runner.invoke(app, ["reproduce", "person-shift", "--data", "synth", "--backbone", "nope", "--plan"])
    assert res.exit_code == 2 and "unknown backbone 'nope'" in res.output


@pytest.mark.slow
def test_table1_with_tiny_swin_end_to_end(tmp_path: Path) -> None:
    from piumr.reproduce.runner import make_settings, run_experiment

    s = make_settings(data="synth", preset="tiny", epochs=1, max_steps_per_epoch=1, out=tmp_path, progress=False,
                      table1_with=("swin3d_tiny",))
    out = run_experiment(s, "table1")
    assert out.table is not None
    measured = [r.key for r in out.table.rows if not r.reported]
    assert measured == ["x3d", "piumr", "swin3d_tiny", "swin3d_tiny+piumr"]
    results = sorted((tmp_path / "runs").glob("swin3d_tiny_*/seed0/result.json"))
    assert len(results) == 2
    cfgs = [json.loads(p.read_text())["config"]["model"] for p in results]
    assert {c["backbone"] for c in cfgs} == {"swin3d_tiny"}


@pytest.mark.parametrize("name", FULL)
def test_full_size_models_match_torchvision_state_dicts(name: str) -> None:
    """Same parameter names and shapes as torchvision's own builder, so its Kinetics .pth files load."""
    import torchvision.models.video as tvv

    frames, crop = NATIVE_INPUT[name]
    ref = getattr(tvv, name)(weights=None).state_dict()
    ours = _model(name, TFAM_STAGES[name][-1], frames, crop, enabled=False).backbone.state_dict()
    cls = set(REGISTRY[name].classifier)
    assert set(ref) == set(ours)
    assert all(ref[k].shape == ours[k].shape for k in ref if k not in cls)


def test_paired_difference_t_interval(tmp_path: Path) -> None:
    from piumr.reproduce.paired import compare_rows, main, paired_difference

    d = paired_difference("m", [50.0, 52.0, 54.0], [51.0, 55.0, 56.0])  # diffs 1, 3, 2
    assert d.mean == pytest.approx(2.0) and d.n == 3
    half = 4.302652729911275 * 1.0 / 3 ** 0.5  # t_{0.975, 2} * sd / sqrt(n)
    assert (d.lo, d.hi) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_difference("m", [1.0], [1.0, 2.0])

    def row(key: str, vals: list[float]) -> dict[str, object]:
        return {"row": key, "seeds": [{"seed": s, "metrics": {"action_top1": v, "f1_mean": v},
                                       "participants": {"mean": v, "std": 1.0, "worst_acc": v - 5,
                                                        "worst10_acc": v - 5}} for s, v in enumerate(vals)]}

    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "x3d.json").write_text(json.dumps(row("x3d", [50.0, 52.0, 54.0])))
    (tmp_path / "rows" / "piumr.json").write_text(json.dumps(row("piumr", [51.0, 55.0, 56.0])))
    res = compare_rows(tmp_path, "x3d", "piumr")
    assert res["seeds"] == [0, 1, 2] and res["diffs"]["p_mean"]["mean"] == pytest.approx(2.0)
    assert res["diffs"]["p_std"]["mean"] == 0.0
    assert main([str(tmp_path), "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["diffs"]["f1_mean"]["n"] == 3
    assert main([str(tmp_path / "nowhere")]) == 2


def test_reproduce_backbone_relabels_rows(tmp_path: Path) -> None:
    from piumr.reproduce.runner import experiment_spec, jobs_for, make_settings

    s = make_settings(data="synth", preset="smoke", out=tmp_path, backbone="swin3d_tiny")
    spec = experiment_spec(s, "person-shift")
    # on another backbone no row is called "PIUmr" (PIUmr is X3D + TFAM + GIRL)
    assert [r.label for r in spec.rows] == ["swin3d_tiny baseline (TFAM off, GIRL off)", "swin3d_tiny + TFAM + GIRL"]
    cfgs = [j.cfg for j in jobs_for(s, spec)]
    assert {c.model.backbone for c in cfgs} == {"swin3d_tiny"} and {c.data.split for c in cfgs} == {"cross-subject"}
    assert all(r.paper is None for r in experiment_spec(s, "table1").rows)
