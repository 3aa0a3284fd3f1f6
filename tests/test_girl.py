"""GIRL (eq. 6-7) against an independent float64 loop implementation, plus edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from piumr import GIRLLoss
from piumr.config import GIRLConfig
from piumr.losses import PIUmrLoss


def loop_reference(f: torch.Tensor, y: torch.Tensor, groups: list[list[int]], tau: float, eta: float,
                   lambda_var: float, eps: float, weight_on: str = "scaled", whole_batch: bool = False) -> float:
    """eq. (6)-(7) with plain Python loops in float64, straight from the paper's text.

    ``weight_on`` picks what the Gaussian is centred on: s_ij (literal), cos_ij, or s_ij - max_k s_ik."""
    f64 = [[float(v) for v in row] for row in f.double()]
    norm = [math.sqrt(sum(v * v for v in row)) for row in f64]
    fn = [[v / n for v in row] for row, n in zip(f64, norm)]
    labels = [int(v) for v in y]

    def s(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(fn[i], fn[j])) / tau

    def u(i: int, k: int, grp: list[int]) -> float:
        if weight_on == "cosine":
            return s(i, k) * tau
        if weight_on == "shifted":
            return s(i, k) - max(s(i, j) for j in grp)
        return s(i, k)

    risks = []
    for anchors in groups:
        total = 0.0
        grp = list(range(len(labels))) if whole_batch else anchors  # j, k run over the group (or the batch)
        for i in anchors:
            gauss = {k: math.exp(-0.5 * ((u(i, k, grp) - eta) / eta) ** 2) for k in grp}
            # the softmax form is the same ratio; compute it stably via the max exponent
            log_g = {k: -0.5 * ((u(i, k, grp) - eta) / eta) ** 2 for k in grp}
            mx = max(log_g.values())
            z = sum(math.exp(v - mx) for v in log_g.values())
            w = {k: math.exp(log_g[k] - mx) / z for k in grp}
            if sum(gauss.values()) > 0:  # where no underflow, the literal formula agrees
                assert all(abs(w[k] - gauss[k] / sum(gauss.values())) < 1e-9 for k in grp)
            lse = math.log(sum(math.exp(s(i, k)) for k in grp))
            num = -sum(w[j] * (s(i, j) - lse) for j in grp if labels[j] == labels[i])
            den = sum(1 for j in grp if labels[j] == labels[i]) + eps
            total += num / den
        risks.append(total / len(anchors))
    mean = sum(risks) / len(risks)
    var = sum((r - mean) ** 2 for r in risks) / len(risks)
    return mean + lambda_var * var


@pytest.mark.parametrize("weight_on", ["scaled", "cosine", "shifted"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_float64_loop(seed: int, weight_on: str) -> None:
    g = torch.Generator().manual_seed(seed)
    b, d, groups = 11, 7, 3
    f = torch.randn(b, d, generator=g)
    y = torch.randint(0, 4, (b,), generator=g)
    tau, eta = (0.07, 0.2) if seed % 2 == 0 else (1.0, 0.5)
    ref_groups = [g_.tolist() for g_ in GIRLLoss(groups=groups, seed=seed).partition(b)]
    for pairs, whole in (("group", False), ("batch", True)):
        loss = GIRLLoss(groups=groups, tau=tau, eta=eta, lambda_var=0.7, seed=seed, weight_on=weight_on,  # type: ignore[arg-type]
                        pairs=pairs)  # type: ignore[arg-type]
        got = float(loss(f, y))
        want = loop_reference(f, y, ref_groups, tau, eta, 0.7, 1e-8, weight_on, whole_batch=whole)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), pairs


def test_batch_pairs_give_group_anchors_partners() -> None:
    """pairs="batch" (default): anchors keep their group, positives come from the whole batch, so at the
    smoke statistics (12 clips, 7 classes, G = 4) far more anchors have a partner than inside groups of 3."""
    g = torch.Generator().manual_seed(0)
    shares = {"batch": [], "group": []}  # type: dict[str, list[float]]
    for _ in range(50):
        f, y = torch.randn(12, 8, generator=g), torch.randint(0, 7, (12,), generator=g)
        for pairs in shares:
            shares[pairs].append(float(GIRLLoss(groups=4, pairs=pairs).parts(f, y).partnered))  # type: ignore[arg-type]
    assert sum(shares["batch"]) / 50 > 0.6 > 0.4 > sum(shares["group"]) / 50


def test_groups_are_a_seeded_partition() -> None:
    parts = GIRLLoss(groups=4, seed=3).partition(10)
    flat = sorted(int(i) for p in parts for i in p)
    assert flat == list(range(10)) and [len(p) for p in parts] == [3, 3, 2, 2]
    again = GIRLLoss(groups=4, seed=3).partition(10)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    assert not all(torch.equal(a, b) for a, b in zip(parts, GIRLLoss(groups=4, seed=4).partition(10)))


def test_variance_term_no_gradient_by_default() -> None:
    torch.manual_seed(0)
    f = torch.randn(16, 8, requires_grad=True)
    y = torch.randint(0, 3, (16,))
    default = GIRLLoss(groups=4, seed=1).parts(f, y)
    assert default.var > 0  # the term has a value ...
    assert not default.var.requires_grad  # ... but no path to the features (stop-gradient, eq. 7)
    (g_total,) = torch.autograd.grad(default.total, f)
    (g_grp,) = torch.autograd.grad(GIRLLoss(groups=4, seed=1).parts(f, y).grp, f)
    torch.testing.assert_close(g_total, g_grp)  # the gradient of the total is the gradient of L_grp alone
    p = GIRLLoss(groups=4, seed=1, var_grad=True).parts(f, y)
    assert p.var > 0
    (gv,) = torch.autograd.grad(p.var, f)
    assert gv.abs().max() > 0


def test_value_includes_variance() -> None:
    torch.manual_seed(0)
    f, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    p = GIRLLoss(groups=4, lambda_var=2.0, seed=1).parts(f, y)
    assert float(p.total) == pytest.approx(float(p.grp) + 2.0 * float(p.var))


@pytest.mark.parametrize(
    ("b", "groups", "labels"),
    [
        (5, 8, None),  # batch smaller than G
        (4, 4, None),  # groups of one
        (6, 2, "same"),  # one label in the whole batch
        (6, 3, "distinct"),  # no anchor has a positive besides itself
        (1, 4, None),  # batch of one
    ],
)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_edge_cases_finite(b: int, groups: int, labels: str | None, exclude_self: bool) -> None:
    torch.manual_seed(0)
    f = torch.randn(b, 6, requires_grad=True)
    if labels == "same":
        y = torch.zeros(b, dtype=torch.long)
    elif labels == "distinct":
        y = torch.arange(b)
    else:
        y = torch.randint(0, 3, (b,))
    loss = GIRLLoss(groups=groups, exclude_self=exclude_self, var_grad=True)(f, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_bf16_inputs() -> None:
    torch.manual_seed(0)
    f = torch.randn(12, 16).bfloat16().requires_grad_()
    y = torch.randint(0, 3, (12,))
    loss = GIRLLoss(groups=3)(f, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad.float()).all()


def test_scale_invariant_in_features() -> None:
    torch.manual_seed(0)
    f, y = torch.randn(10, 5), torch.randint(0, 2, (10,))
    a = GIRLLoss(groups=2, seed=5)(f, y)
    b = GIRLLoss(groups=2, seed=5)(f * 17.0, y)
    torch.testing.assert_close(a, b)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="features"):
        GIRLLoss()(torch.randn(4, 3, 2), torch.zeros(4, dtype=torch.long))


def test_piumr_loss_is_sum() -> None:
    torch.manual_seed(0)
    logits, emb, y = torch.randn(8, 5), torch.randn(8, 6), torch.randint(0, 5, (8,))
    parts = PIUmrLoss(GIRLConfig(groups=2, seed=9))(logits, emb, y)
    girl = GIRLLoss(groups=2, seed=9)(emb, y)
    ce = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(parts.total, ce + girl)
    off = PIUmrLoss(GIRLConfig(enabled=False))(logits, emb, y)
    torch.testing.assert_close(off.total, ce)


def test_detach_weights_changes_gradient_not_value() -> None:
    torch.manual_seed(0)
    f = torch.randn(12, 6, requires_grad=True)
    y = torch.randint(0, 3, (12,))
    a = GIRLLoss(groups=2, seed=3)(f, y)
    b = GIRLLoss(groups=2, seed=3, detach_weights=True)(f, y)
    torch.testing.assert_close(a, b)
    (ga,) = torch.autograd.grad(a, f)
    (gb,) = torch.autograd.grad(GIRLLoss(groups=2, seed=3, detach_weights=True)(f, y), f)
    assert (ga - gb).abs().max() > 1e-4, "detaching the weights must change the gradient"


def test_defaults_match_config() -> None:
    """GIRLLoss's keyword defaults are GIRLConfig's (one source of truth), and from_config passes every field."""
    import inspect

    cfg = GIRLConfig().model_dump()
    params = inspect.signature(GIRLLoss.__init__).parameters
    names = [n for n in params if n != "self"]
    assert set(names) == set(cfg) - {"enabled", "weight"}
    for name in names:
        assert params[name].default == cfg[name], f"GIRLLoss.{name} drifts from GIRLConfig"
    custom = GIRLConfig(groups=3, tau=0.5, eta=0.3, lambda_var=0.2, var_grad=True, exclude_self=True,
                        weight_on="shifted", detach_weights=True, seed=7, grouping="person", pairs="group")
    loss = GIRLLoss.from_config(custom)
    assert (loss.groups, loss.tau, loss.eta, loss.lambda_var, loss.var_grad, loss.exclude_self, loss.weight_on,
            loss.detach_weights, loss.grouping, loss.pairs) == (3, 0.5, 0.3, 0.2, True, True, "shifted", True,
                                                                 "person", "group")


def test_literal_weights_sit_on_least_similar_pair() -> None:
    """Literal units (Gaussian on cos/0.07 around 0.2): w is ~one-hot on the least similar group-mate when
    cosines are high, as for post-ReLU embeddings; in cosine units (default) the weights stay spread."""
    g = torch.Generator().manual_seed(0)
    f = torch.rand(16, 32, generator=g) + 0.5  # positive features: pairwise cosines ~0.9
    lit = GIRLLoss(weight_on="scaled", tau=0.07, eta=0.2).gaussian_weights(f)
    cos = torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(f, dim=1).t()
    assert float(lit.max(dim=1).values.mean()) > 0.9
    assert torch.equal(lit.argmax(dim=1), cos.argmin(dim=1))
    default = GIRLLoss().gaussian_weights(f)
    assert float(default.max(dim=1).values.mean()) < 0.2
    shifted = GIRLLoss(weight_on="shifted", tau=0.07, eta=0.2).gaussian_weights(f)
    assert torch.equal(shifted.argmax(dim=1), torch.arange(16))  # the self-pair: the most similar one


def test_person_groups_are_participants_against_float64_loop() -> None:
    """grouping="person": one group per participant id, anchors = its clips, pairs over the whole batch.
    Random pseudo-groups (or person groups that only pair within the participant) give other values."""
    g = torch.Generator().manual_seed(4)
    f, y = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    persons = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss = GIRLLoss(groups=4, grouping="person", lambda_var=0.7)
    groups = loss.partition(12, persons)
    assert sorted(tuple(t.tolist()) for t in groups) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)]
    want = loop_reference(f, y, [t.tolist() for t in groups], 0.07, 0.5, 0.7, 1e-8, "cosine", whole_batch=True)
    assert float(loss(f, y, persons)) == pytest.approx(want, rel=1e-4, abs=1e-5)
    within = loop_reference(f, y, [t.tolist() for t in groups], 0.07, 0.5, 0.7, 1e-8, "cosine")
    assert abs(want - within) > 1e-3
    assert abs(float(GIRLLoss(groups=4, lambda_var=0.7, pairs="group")(f, y)) - want) > 1e-3
    with pytest.raises(ValueError, match="participant"):
        loss(f, y)


def test_weight_diagnostics_see_the_emphasis() -> None:
    """w_eff (effective number of an anchor's positive weights / their count) is 1 for uniform weights and
    falls when the Gaussian singles out pairs; w_ratio (max/min) rises. Anchors without a partner are counted."""
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    f = torch.randn(8, 16, generator=g)
    flat = GIRLLoss(groups=1, eta=1e3).parts(f, y)  # a Gaussian far wider than any cosine gap: uniform
    assert float(flat.w_eff) == pytest.approx(1.0, abs=1e-4) and float(flat.w_ratio) == pytest.approx(1.0, abs=1e-3)
    sharp = GIRLLoss(groups=1, eta=0.05).parts(f, y)
    assert float(sharp.w_eff) < 0.9 and float(sharp.w_ratio) > 2.0
    assert float(flat.partnered) == 1.0
    lonely = GIRLLoss(groups=1).parts(f, torch.arange(8))
    assert float(lonely.partnered) == 0.0 and math.isnan(float(lonely.w_eff))


def test_criterion_logs_and_state_travel_without_the_trainer_naming_them() -> None:
    """The criterion reports its own log keys and extra checkpoint state; restoring the state reproduces
    the next group draw exactly."""
    from piumr.config import PRESETS
    from piumr.losses import build_criterion

    torch.manual_seed(0)
    logits, emb, y = torch.randn(8, 5), torch.randn(8, 6), torch.randint(0, 5, (8,))
    crit = build_criterion(PRESETS["tiny"])
    out = crit(logits, emb, y)
    assert {"loss", "ce", "girl", "girl_var", "girl_w_eff", "girl_w_ratio", "girl_partnered"} <= set(out.logs)
    state = crit.state_tensors()
    a = crit(logits, emb, y).total
    other = build_criterion(PRESETS["tiny"])
    other.load_state_tensors(state)
    torch.testing.assert_close(other(logits, emb, y).total, a)
    off = build_criterion(PRESETS["tiny"].model_copy(update={"girl": GIRLConfig(enabled=False)}))
    assert set(off(logits, emb, y).logs) == {"loss", "ce"} and off.state_tensors() == {}


def test_train_module_does_not_name_the_loss() -> None:

    import piumr.train

    assert "girl" not in Path(piumr.train.__file__).read_text().lower()


def test_person_batches_hold_g_participants() -> None:
    """Every batch of the person sampler holds exactly G participants with equal shares, no clip twice; a
    plain shuffle of the same records does not (so the check can fail)."""
    from piumr.data.loaders import person_batches
    from piumr.data.ma52 import ClipRecord

    recs = [ClipRecord(Path(f"{p:04d}_01_{i}.mp4"), 0, 1, f"{p:04d}", None, None) for p in range(7) for i in range(9)]
    order = person_batches(recs, 12, 4, torch.Generator().manual_seed(0))
    assert len(order) == len(set(order)) and len(order) >= 36
    for k in range(0, len(order), 12):
        names = [recs[i].participant for i in order[k:k + 12]]
        assert len(set(names)) == 4 and all(names.count(n) == 3 for n in set(names))
    plain = torch.randperm(len(recs), generator=torch.Generator().manual_seed(0)).tolist()
    assert any(len({recs[i].participant for i in plain[k:k + 12]}) != 4 for k in range(0, 60, 12))
    with pytest.raises(ValueError, match="participants"):
        person_batches(recs[:18], 12, 4, torch.Generator())


def test_cli_selects_person_groups_var_grad_and_any_field(tmp_path: Path) -> None:
    """`piumr train --girl-grouping person --girl-var-grad --set KEY=VALUE` trains those arms (config.json
    records them, the log carries the criterion's keys); a bad value is one line naming the flag."""
    import json

    from typer.testing import CliRunner

    from piumr_cli.main import app

    base = ["train", "--preset", "tiny", "--data", "synth", "--epochs", "1", "--workers", "0", "--quiet",
            "--threads", "1"]
    res = CliRunner().invoke(app, [*base, "--girl-grouping", "person", "--girl-var-grad", "--set",
                                   "girl.exclude_self=true", "--set", "model.tfam.fusion_lambda=batch",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["girl"]["grouping"], cfg["girl"]["var_grad"], cfg["girl"]["exclude_self"]) == ("person", True, True)
    assert cfg["model"]["tfam"]["fusion_lambda"] == "batch"
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("girl_partnered" in r and "tfam_lam_t" in r for r in steps)
    for args, flag in ((["--girl-grouping", "nobody"], "--girl-grouping"), (["--set", "girl.tau"], "--set"),
                       (["--set", "girl.tua=0.1"], "--set"),
                       (["--girl-grouping", "person", "--batch-size", "7"], "--girl-grouping")):
        bad = CliRunner().invoke(app, [*base, *args, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and flag in bad.output, bad.output
