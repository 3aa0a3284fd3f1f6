"""TFAM (eq. 1-5): shapes, identity, gradients, determinism, Sinkhorn."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor

from piumr import TFAM
from piumr.model.tfam import dct_bank, sinkhorn

# a different size per axis so swapped axes fail
B, C, T, H, W = 2, 12, 5, 7, 11


def small_tfam(**kw: object) -> TFAM:
    return TFAM(channels=C, num_dct=6, dct_kernel=3, attn_dim=8, attn_heads=2, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [{}, {"frequency": False}, {"temporal": False}, {"fusion": "mean"}, {"temporal_perturb": "mask"}],
)
def test_shape_preserved(kw: dict[str, object]) -> None:
    torch.manual_seed(0)
    m = small_tfam(**kw)
    x = torch.randn(B, C, T, H, W)
    for mode in (True, False):
        m.train(mode)
        y = m(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


def test_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="channels=12"):
        small_tfam()(torch.randn(B, C + 1, T, H, W))


def test_no_branch_is_an_error() -> None:
    with pytest.raises(ValueError):
        small_tfam(frequency=False, temporal=False)


@pytest.mark.parametrize("fusion", ["consistency", "mean"])
def test_zero_attention_is_identity(fusion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    m = small_tfam(fusion=fusion)
    assert m.freq is not None and m.temp is not None
    monkeypatch.setattr(m.freq, "attention", lambda x, e=None: torch.zeros(x.shape[0], 1, x.shape[3], x.shape[4]))
    monkeypatch.setattr(m.temp, "attention", lambda x: torch.zeros(x.shape[0], x.shape[2]))
    x = torch.randn(B, C, T, H, W)
    for mode in (True, False):
        m.train(mode)
        torch.testing.assert_close(m(x), x, rtol=1e-5, atol=1e-5)
    # and the non-patched module is NOT the identity (the test can fail)
    m2 = small_tfam(fusion=fusion).eval()
    assert (m2(x) - x).abs().max() > 1e-3


def test_every_parameter_gets_gradient() -> None:
    torch.manual_seed(0)
    m = small_tfam(fusion_grad=True).train()
    x = torch.randn(B, C, T, H, W)
    m(x).pow(2).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient: {missing}"


def test_every_parameter_gets_gradient_default_fusion() -> None:
    torch.manual_seed(1)
    m = small_tfam().train()
    m(torch.randn(B, C, T, H, W)).pow(2).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient: {missing}"


def test_eval_is_deterministic_train_is_not() -> None:
    torch.manual_seed(0)
    m = small_tfam()
    x = torch.randn(B, C, T, H, W)
    m.train()
    for _ in range(3):
        m(x)  # collect running fusion weights
    a, b = m(x), m(x)
    assert (a - b).abs().max() > 0, "training mode should be stochastic (perturbations)"
    m.eval()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    b = m(x)
    assert torch.equal(a, b)


def test_running_fusion_weights_sum_to_one_and_move() -> None:
    torch.manual_seed(0)
    m = small_tfam(fusion_lambda="batch")
    lam0 = m.lam.clone()
    m.train()
    m(torch.randn(B, C, T, H, W) * 3)
    assert not torch.equal(lam0, m.lam)
    assert abs(float(m.lam.sum()) - 1.0) < 1e-5


def test_sinkhorn_doubly_stochastic() -> None:
    torch.manual_seed(0)
    k = torch.rand(3, 9, 9) + 0.05
    k = 0.5 * (k + k.transpose(1, 2))
    s = sinkhorn(k, 50)
    torch.testing.assert_close(s.sum(-1), torch.ones(3, 9), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.sum(-2), torch.ones(3, 9), atol=1e-4, rtol=0)
    assert not torch.allclose(k.sum(-1), torch.ones(3, 9), atol=1e-2)


def test_temporal_kernels_are_valid() -> None:
    torch.manual_seed(0)
    m = small_tfam(sinkhorn_iters=30)
    assert m.temp is not None
    k_mix, a_t = m.temp.kernels(torch.randn(B, C, T, H, W))
    assert k_mix.shape == (B, T, T) and a_t.shape == (B, T, T)
    assert ((a_t > 0) & (a_t < 1)).all()


def test_dct_bank_orthonormal() -> None:
    bank = dct_bank(9, 3).reshape(9, 9).double()
    torch.testing.assert_close(bank @ bank.t(), torch.eye(9, dtype=torch.float64), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        dct_bank(10, 3)


def test_bf16_autocast_runs() -> None:
    m = small_tfam().train()
    x = torch.randn(B, C, T, H, W)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y.float()).all()


def test_plugs_into_x3d_and_resnet() -> None:
    """TFAM after any stage of X3D and of a pytorchvideo ResNet (via attach_tfam)."""
    from piumr.model import attach_tfam
    from piumr.model.backbone import build_x3d, stage_channels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pytorchvideo.models.resnet import create_resnet
    x = torch.randn(1, 3, 4, 32, 32)
    for stage in range(1, 5):
        net = build_x3d("x3d_tiny", num_classes=5, frames=4, crop=32)
        attach_tfam(net, stage, small_tfam_for(stage_channels(net.blocks[stage])))
        assert net(x).shape == (1, 5)
    res = create_resnet(model_depth=50, model_num_class=5, head_pool_kernel_size=(1, 1, 1),
                        stem_dim_out=8, head_activation=None)
    res.blocks[5].pool = torch.nn.AdaptiveAvgPool3d(1)
    called: list[Tensor] = []
    t = small_tfam_for(stage_channels(res.blocks[2]))
    t.register_forward_hook(lambda _m, _i, out: called.append(out))
    attach_tfam(res, 2, t)
    assert res(torch.randn(1, 3, 4, 64, 64)).shape == (1, 5)
    assert called, "TFAM was not run inside the ResNet"


def small_tfam_for(c: int) -> TFAM:
    return TFAM(channels=c, num_dct=4, dct_kernel=3, attn_dim=8, attn_heads=2)


def _distinct_frames(b: int = 3, c: int = C, t: int = 8, h: int = 4, w: int = 5) -> torch.Tensor:
    """Post-ReLU-like features whose frames differ in content: (b, c, t, h, w), non-negative."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(b, c, 1, h, w, generator=g)
    per_frame = torch.rand(b, c, t, 1, 1, generator=g) * 2.0
    return torch.relu(base + per_frame + 0.3 * torch.randn(b, c, t, h, w, generator=g))


def test_defaults_match_config() -> None:
    """Every keyword default of TFAM and its branches is TFAMConfig's (one source of truth)."""
    import inspect

    from piumr.config import TFAMConfig
    from piumr.model.tfam import FrequencyBranch, TemporalBranch

    cfg = TFAMConfig().model_dump()
    for cls in (TFAM, FrequencyBranch, TemporalBranch):
        params = inspect.signature(cls.__init__).parameters
        checked = [n for n in params if n in cfg]
        assert checked, cls
        for name in checked:
            assert params[name].default == cfg[name], f"{cls.__name__}.{name} drifts from TFAMConfig"
    extra = {n for n in inspect.signature(TFAM.__init__).parameters if n not in ("self", "channels", "eps")}
    assert extra == set(cfg) - {"enabled", "stage"}, "TFAM keywords and TFAMConfig fields differ"


@pytest.mark.parametrize("perturb", ["mask", "shuffle"])
def test_stability_below_one_when_perturbed(perturb: str) -> None:
    """With order-aware pooling, s_t < 1 whenever the perturbation changes the input (issue: s_t was == 1)."""
    torch.manual_seed(0)
    m = small_tfam(temporal_perturb=perturb, stability_on="all").train()
    x = _distinct_frames()
    assert m.temp is not None and m.freq is not None
    with torch.no_grad():
        s_t, s_s = m.stability_scores(x, m.temp(x), m.freq.spectrum(x))
    assert s_t.shape == (3,) and s_s.shape == (3,)
    assert float(s_t.max()) < 0.999, s_t
    assert bool(torch.isfinite(s_s).all())


def test_literal_stability_is_vacuous_under_shuffle() -> None:
    """The literal reading (shuffle + one max over (T, H, W)) gives s_t == 1: documented, kept behind switches."""
    torch.manual_seed(0)
    m = small_tfam(temporal_perturb="shuffle", stability_pool="global", stability_on="all").train()
    x = _distinct_frames()
    assert m.temp is not None and m.freq is not None
    with torch.no_grad():
        s_t, _ = m.stability_scores(x, m.temp(x), m.freq.spectrum(x))
    assert torch.allclose(s_t, torch.ones_like(s_t), atol=1e-5)


def _gate_spread(m: TFAM, x: torch.Tensor) -> float:
    assert m.temp is not None
    with torch.no_grad():
        gate = m.temp.attention(x)
    return float((gate.std(dim=1) / gate.mean(dim=1)).mean())


def test_temporal_gate_varies_over_frames_at_init() -> None:
    """Default gate tells frames apart at init; the literal K_mix (~1/T entries) barely does."""
    x = _distinct_frames()
    spreads, literal = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        spreads.append(_gate_spread(small_tfam(), x))
        torch.manual_seed(seed)
        literal.append(_gate_spread(small_tfam(kernel_scale="none", tokens="mean", gate_scale_init=1.0), x))
    assert min(spreads) > 3e-3, spreads
    assert min(spreads) > 10 * max(literal), (spreads, literal)


def test_mask_perturbation_masks_some_but_not_all_frames() -> None:
    m = small_tfam(temporal_perturb="mask", mask_ratio=0.0)
    x = torch.ones(2, C, 5, 3, 3)
    for _ in range(10):
        kept = m._perturb_frames(x).amax(dim=(1, 3, 4))  # (B, T), per clip
        assert all(1 <= int((k == 0).sum()) <= 4 for k in kept)


def _scores_with(m: TFAM, x: Tensor, monkeypatch: pytest.MonkeyPatch, temporal: object = None,
                 spatial: object = None) -> tuple[Tensor, Tensor]:
    """(s_t, s_s) with the temporal / spatial attention replaced by ``temporal`` / ``spatial`` when given."""
    assert m.temp is not None and m.freq is not None
    with monkeypatch.context() as mp:
        if temporal is not None:
            mp.setattr(m.temp, "attention", temporal)
        if spatial is not None:
            mp.setattr(m.freq, "attention", spatial)
        with torch.no_grad():
            return m.stability_scores(x)


def test_stability_reads_the_branches(monkeypatch: pytest.MonkeyPatch) -> None:
    """s_t and s_s compare each branch's modulation on what the perturbation left: strictly between the
    values a vacuous branch gives, 0 for an identity branch (no modulation) and 1 for one that ignores its
    input. The first reading ("all") gives an identity temporal branch s_t ~ sqrt(kept fraction): it
    measured the mask, not the branch."""
    x = _distinct_frames()
    torch.manual_seed(0)
    m = small_tfam().train()
    torch.manual_seed(1)
    s_t, s_s = _scores_with(m, x, monkeypatch)
    assert float(s_t.max()) < 0.99999 and float(s_t.min()) > 0.05, s_t
    assert float(s_s.max()) < 0.99999 and float(s_s.min()) > 0.05, s_s
    identity_t = lambda z: torch.zeros(z.shape[0], z.shape[2])  # noqa: E731  phi_t(x) = x
    identity_s = lambda z, e=None: torch.zeros(z.shape[0], 1, z.shape[3], z.shape[4])  # noqa: E731
    blind_t = lambda z: torch.full((z.shape[0], z.shape[2]), 0.7)  # noqa: E731  ignores its input
    blind_s = lambda z, e=None: torch.full((z.shape[0], 1, z.shape[3], z.shape[4]), 0.7)  # noqa: E731
    s_t_id, s_s_id = _scores_with(m, x, monkeypatch, identity_t, identity_s)
    assert float(s_t_id.abs().max()) < 1e-6 and float(s_s_id.abs().max()) < 1e-6
    s_t_bl, s_s_bl = _scores_with(m, x, monkeypatch, blind_t, blind_s)
    assert torch.allclose(s_t_bl, torch.ones_like(s_t_bl)) and torch.allclose(s_s_bl, torch.ones_like(s_s_bl))
    first = small_tfam(stability_on="all").train()
    first.load_state_dict(m.state_dict())
    s_t_first, _ = _scores_with(first, x, monkeypatch, identity_t)
    kept = 1 - round(0.25 * x.shape[2]) / x.shape[2]
    assert torch.allclose(s_t_first, torch.full_like(s_t_first, kept ** 0.5), atol=0.1), s_t_first


def test_fusion_weights_per_clip_in_train_and_eval() -> None:
    """lambda is per clip (it differs between clips), eval uses the same rule deterministically, and a
    clip's eval output does not depend on its batch-mates. The batch-mean form gives every clip one weight."""
    x = _distinct_frames()
    x = torch.cat([x, x.flip(2) * 2.0 + 0.3])  # 6 clips of different content
    torch.manual_seed(0)
    m = small_tfam()
    m.train()
    m(x)
    assert m.last_lam is not None and m.last_lam.shape == (6, 2)
    assert float(m.last_lam[:, 0].std()) > 1e-4, m.last_lam
    torch.testing.assert_close(m.last_lam.sum(dim=1), torch.ones(6))
    m.eval()
    with torch.no_grad():
        full = m(x)
        lam_eval = m.last_lam
        alone = m(x[2:3])
    assert lam_eval is not None and float(lam_eval[:, 0].std()) > 1e-4, lam_eval
    torch.testing.assert_close(full[2:3], alone)
    assert m.temp is not None and m.freq is not None
    with torch.no_grad():  # each clip is fused with its own weights, not the batch's mean
        x_t, x_s = m.temp(x), x * m.freq.attention(x)[:, :, None] + x
    per_clip = lam_eval[:, 0, None, None, None, None] * x_t + lam_eval[:, 1, None, None, None, None] * x_s
    mean = lam_eval.mean(dim=0)
    torch.testing.assert_close(full, per_clip, rtol=0, atol=1e-6)
    assert (full - (mean[0] * x_t + mean[1] * x_s)).abs().max() > 1e-5
    with torch.no_grad():
        assert torch.equal(m(x), full)
    batch = small_tfam(fusion_lambda="batch")
    batch.load_state_dict(m.state_dict())
    batch.train()
    batch(x)
    assert batch.last_lam is not None


def test_literal_row_tokens_see_the_input_only_through_a_t() -> None:
    """tokens="rows" (SelfAttn(Linear(A_t)), literal): scaling the input keeps every frame affinity, so A_t
    and the gate stay the same; the default tokens transport descriptors, so the gate changes. T != 16
    resamples the rows."""
    x = _distinct_frames()
    for t in (8, 16):
        xt = x[:, :, torch.arange(t) % x.shape[2]] if t != x.shape[2] else x
        torch.manual_seed(0)
        rows = small_tfam(tokens="rows")
        assert rows.temp is not None
        with torch.no_grad():
            torch.testing.assert_close(rows.temp.attention(xt), rows.temp.attention(3.0 * xt))
    torch.manual_seed(0)
    centred = small_tfam()
    assert centred.temp is not None
    with torch.no_grad():
        assert (centred.temp.attention(x) - centred.temp.attention(3.0 * x)).abs().max() > 1e-4


def test_an_unbounded_sinkhorn_iteration_count_is_refused_naming_the_field() -> None:
    """A config (or a checkpoint's config) asking for 1e9 Sinkhorn iterations would hang every forward pass."""
    import pydantic
    from typer.testing import CliRunner

    from piumr.config import MAX_SINKHORN_ITERS, PRESETS, with_overrides
    from piumr_cli.main import app

    assert with_overrides(PRESETS["tiny"], {"model.tfam.sinkhorn_iters": MAX_SINKHORN_ITERS}).model.tfam.sinkhorn_iters \
        == MAX_SINKHORN_ITERS
    with pytest.raises(pydantic.ValidationError, match="sinkhorn_iters"):
        with_overrides(PRESETS["tiny"], {"model.tfam.sinkhorn_iters": 10**9})
    bad = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--epochs", "1", "--quiet",
                                   "--set", "model.tfam.sinkhorn_iters=1000000000", "--out", "unused-run"])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "sinkhorn_iters" in bad.output, bad.output
