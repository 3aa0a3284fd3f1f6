"""GIRL (eq. 6-7) against an independent float64 loop implementation, plus edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from piumr import GIRLLoss
from piumr.config import GIRLConfig
from piumr.losses import PIUmrLoss


def loop_reference(f: torch.Tensor, y: torch.Tensor, groups: list[list[int]], tau: float, eta: float,
                   lambda_var: float, eps: float, weight_on: str = "scaled") -> float:
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
    for grp in groups:
        total = 0.0
        for i in grp:
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
        risks.append(total / len(grp))
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
    loss = GIRLLoss(groups=groups, tau=tau, eta=eta, lambda_var=0.7, seed=seed, weight_on=weight_on)  # type: ignore[arg-type]
    ref_groups = [g_.tolist() for g_ in GIRLLoss(groups=groups, seed=seed).partition(b)]
    got = float(loss(f, y))
    want = loop_reference(f, y, ref_groups, tau, eta, 0.7, 1e-8, weight_on)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


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
                        weight_on="shifted", detach_weights=True, seed=7)
    loss = GIRLLoss.from_config(custom)
    assert (loss.groups, loss.tau, loss.eta, loss.lambda_var, loss.var_grad, loss.exclude_self, loss.weight_on,
            loss.detach_weights) == (3, 0.5, 0.3, 0.2, True, True, "shifted", True)


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
