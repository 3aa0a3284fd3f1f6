"""The domain-generalisation baselines over persons (``piumr.dg``) against their published definitions, each
recomputed here independently (plain loops over persons in float64), on toy problems."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from piumr.config import MixStyleConfig, ModelConfig, TFAMConfig, TrainConfig
from piumr.dg.coral import CORALLoss, coral_penalty
from piumr.dg.groupdro import GroupDROLoss
from piumr.dg.mixstyle import MixStyle
from piumr.dg.vrex import VRExLoss
from piumr.losses import Criterion, build_criterion, criterion_slug
from piumr.model.piumr import PIUmrNet


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors on one intra-op thread (restored after): on a loaded machine, conftest's two threads made each
    small op wait ~20 ms for a descheduled worker."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def person_ce(logits: Tensor, labels: Tensor, persons: Tensor) -> dict[int, float]:
    """Mean cross-entropy per participant, by a loop in float64: {person id: R_g}."""
    out: dict[int, float] = {}
    for g in sorted(set(persons.tolist())):
        rows = [i for i in range(len(labels)) if int(persons[i]) == g]
        losses = []
        for i in rows:
            z = [float(v) for v in logits[i].double()]
            m = max(z)
            losses.append(m + math.log(sum(math.exp(v - m) for v in z)) - z[int(labels[i])])
        out[g] = sum(losses) / len(losses)
    return out


def sgd_step(model: torch.nn.Module, total: Tensor, lr: float) -> None:
    """One plain gradient step (torch.optim's first step imports torch._dynamo: seconds)."""
    grads = torch.autograd.grad(total, list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p.sub_(lr * g)


def batch(seed: int, persons: list[int], k: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = len(persons)
    return torch.randn(b, k, generator=g), torch.randint(0, k, (b,), generator=g), torch.tensor(persons)


# ---------------------------------------------------------------- GroupDRO


def test_groupdro_weights_match_the_closed_form() -> None:
    """Two steps with persons appearing at different times: q_g = exp(eta S_g) / sum_h exp(eta S_h) over the ids
    seen, S_g the sum of g's past batch losses; total = sum over present g of q_g R_g with the updated q."""
    eta = 0.7
    loss = GroupDROLoss(eta=eta)
    sums: dict[int, float] = {}
    for seed, persons in ((0, [0, 3, 3, 0, 3]), (1, [3, 5, 5, 7, 3, 5])):
        logits, labels, pid = batch(seed, persons)
        out = loss(logits, None, labels, pid)
        risks = person_ce(logits, labels, pid)
        for g, r in risks.items():
            sums[g] = sums.get(g, 0.0) + r
        z = sum(math.exp(eta * s) for s in sums.values())
        q = {g: math.exp(eta * s) / z for g, s in sums.items()}
        assert out.total.item() == pytest.approx(sum(q[g] * r for g, r in risks.items()), rel=1e-5)
        assert out.logs["ce"].item() == pytest.approx(sum(F.cross_entropy(logits, labels, reduction="none").tolist())
                                                      / len(persons), rel=1e-6)
    got = loss.q
    assert len(got) == 8 and got.sum().item() == pytest.approx(1.0)
    for g in range(8):
        assert got[g].item() == pytest.approx(q.get(g, 0.0), rel=1e-6, abs=1e-12)  # risks in float32


def test_groupdro_raises_the_weight_of_the_hard_person() -> None:
    """A linear classifier on three persons, one with half its labels flipped: its weight grows above uniform."""
    g = torch.Generator().manual_seed(0)
    n = 24
    x = torch.randn(3 * n, 2, generator=g)
    y = (x[:, 0] > 0).long()
    persons = torch.arange(3).repeat_interleave(n)
    hard = persons == 2
    y[hard] = torch.where(torch.rand(n, generator=g) < 0.5, 1 - y[hard], y[hard])
    model = torch.nn.Linear(2, 2)
    loss = GroupDROLoss(eta=0.1)
    for _ in range(30):
        sgd_step(model, loss(model(x), None, y, persons).total, 0.5)
    q = loss.q
    assert int(q.argmax()) == 2 and q[2].item() > 0.4 > q[0].item()


def test_groupdro_needs_persons() -> None:
    logits, labels, _ = batch(0, [0, 1])
    with pytest.raises(ValueError, match="groupdro.*participant"):
        GroupDROLoss()(logits, None, labels, None)
    with pytest.raises(ValueError, match="ids must be in 0"):
        GroupDROLoss()(logits, None, labels, torch.tensor([0, -1]))


# ---------------------------------------------------------------- V-REx


def test_vrex_is_mean_plus_lambda_variance_with_the_warm_up() -> None:
    """total = mean_g R_g + w Var_g R_g (population variance), w = 1 for ``anneal_steps`` calls, then lambda."""
    loss = VRExLoss(lambda_=7.0, anneal_steps=2)
    for step in range(4):
        logits, labels, pid = batch(step, [0, 0, 1, 2, 2, 2, 4])
        out = loss(logits, None, labels, pid)
        r = list(person_ce(logits, labels, pid).values())
        mean = sum(r) / len(r)
        var = sum((v - mean) ** 2 for v in r) / len(r)
        w = 1.0 if step < 2 else 7.0
        assert out.total.item() == pytest.approx(mean + w * var, rel=1e-5)
        assert out.logs["vrex_penalty"].item() == pytest.approx(var, rel=1e-4)
    assert int(loss.step) == 4


def test_vrex_penalty_falls_while_training() -> None:
    """A linear classifier whose start favours two persons over the third: V-REx evens their risks out, far more
    than the same steps on the mean risk alone (lambda = 0)."""
    g = torch.Generator().manual_seed(1)
    n = 16
    persons = torch.arange(3).repeat_interleave(n)
    y = torch.randint(0, 2, (3 * n,), generator=g)
    x = torch.randn(3 * n, 2, generator=g) * 0.3 + (2 * y - 1).float()[:, None]
    x[persons == 2, 1] *= -1  # person 2: the second feature points the other way

    def penalties(lam: float) -> tuple[float, float]:
        model = torch.nn.Linear(2, 2)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.0, -2.0], [0.0, 2.0]]))  # reads only the second feature
            model.bias.zero_()
        loss = VRExLoss(lambda_=lam)
        seen = []
        for _ in range(60):
            parts = loss(model(x), None, y, persons)
            seen.append(parts.logs["vrex_penalty"].item())
            sgd_step(model, parts.total, 0.05)
        return seen[0], seen[-1]

    first, last = penalties(10.0)
    assert first > 1.0 and last < 0.01 * first
    assert last < 0.2 * penalties(0.0)[1]


# ---------------------------------------------------------------- CORAL


def coral_reference(emb: Tensor, persons: Tensor) -> float:
    """mean over pairs i<j of persons with >= 2 clips of mean (mu_i - mu_j)^2 + mean (C_i - C_j)^2, C unbiased;
    by loops in float64."""
    e = emb.double()
    stats = []
    for g in sorted(set(persons.tolist())):
        x = e[persons == g]
        if len(x) < 2:
            continue
        mu = [sum(float(x[r, d]) for r in range(len(x))) / len(x) for d in range(x.shape[1])]
        cov = [[sum((float(x[r, a]) - mu[a]) * (float(x[r, b]) - mu[b]) for r in range(len(x))) / (len(x) - 1)
                for b in range(x.shape[1])] for a in range(x.shape[1])]
        stats.append((mu, cov))
    d = emb.shape[1]
    terms = []
    for i in range(len(stats)):
        for j in range(i + 1, len(stats)):
            (mi, ci), (mj, cj) = stats[i], stats[j]
            mean_diff = sum((a - b) ** 2 for a, b in zip(mi, mj)) / d
            cov_diff = sum((ci[a][b] - cj[a][b]) ** 2 for a in range(d) for b in range(d)) / (d * d)
            terms.append(mean_diff + cov_diff)
    return sum(terms) / len(terms) if terms else 0.0


def test_coral_penalty_is_the_pairwise_formula() -> None:
    g = torch.Generator().manual_seed(0)
    persons = torch.tensor([0, 0, 0, 2, 2, 5, 5, 5, 5, 9])  # person 9 has one clip: left out
    emb = torch.randn(len(persons), 4, generator=g) * torch.tensor([1.0, 2.0, 0.5, 1.5]) + persons[:, None] * 0.3
    penalty, used = coral_penalty(emb, persons)
    assert used == 3 and penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(coral_reference(emb, persons), rel=1e-5)
    logits, labels, _ = batch(0, persons.tolist())
    out = CORALLoss(weight=0.3)(logits, emb, labels, persons)
    ce = F.cross_entropy(logits, labels)
    assert out.total.item() == pytest.approx(ce.item() + 0.3 * penalty.item(), rel=1e-6)
    assert out.logs["coral_penalty"].item() == pytest.approx(penalty.item())


def test_coral_is_zero_for_identical_persons_and_positive_for_shifted_ones() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(5, 3, generator=g)
    persons = torch.arange(3).repeat_interleave(5)
    same = torch.cat([base, base[torch.randperm(5, generator=g)], base.flip(0)])  # one distribution, reordered
    assert coral_penalty(same, persons)[0].item() == pytest.approx(0.0, abs=1e-6)
    shifted = same + persons[:, None].float()  # means apart
    scaled = same * (1 + persons[:, None].float())  # covariances apart
    assert coral_penalty(shifted, persons)[0].item() > 0.5
    assert coral_penalty(scaled, persons)[0].item() > 0.5


def test_coral_edge_cases() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    p, used = coral_penalty(emb, torch.tensor([0, 0, 1, 2]))  # one person qualifies
    assert used == 1 and p.item() == 0.0 and p.device == emb.device and p.dim() == 0
    logits, labels, pid = batch(0, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="embedding"):
        CORALLoss()(logits, None, labels, pid)
    with pytest.raises(ValueError, match="coral.*participant"):
        CORALLoss()(logits, emb, labels, None)
    grads = torch.autograd.grad(coral_penalty(emb, torch.tensor([0, 0, 1, 1]))[0], emb)[0]
    assert torch.isfinite(grads).all() and grads.abs().sum() > 0


# ---------------------------------------------------------------- the three criteria


CRITERIA: dict[str, tuple[type[Criterion], str]] = {"groupdro": (GroupDROLoss, "eta"), "vrex": (VRExLoss, "lambda"),
                                                     "coral": (CORALLoss, "weight")}


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_criteria_through_the_registry(name: str) -> None:
    cls, option = CRITERIA[name]
    cfg = TrainConfig(loss=name, loss_options={option: 0.5})
    crit = build_criterion(cfg)
    assert type(crit) is cls and crit.needs_persons and criterion_slug(cfg) == name
    logits, labels, pid = batch(3, [0, 0, 1, 1, 2, 2])
    out = crit(logits, torch.randn(6, 4), labels, pid)
    assert {"loss", "ce"} <= set(out.logs) and out.logs["loss"] is out.total
    for v in out.logs.values():
        assert v.dtype == torch.float32 and v.dim() == 0
    assert out.logs["ce"].item() == pytest.approx(F.cross_entropy(logits, labels).item())
    with pytest.raises(ValueError, match=f"loss '{name}' has no option 'bogus'"):
        build_criterion(TrainConfig(loss=name, loss_options={"bogus": 1.0}))
    with pytest.raises(ValueError, match=f"'{option}' must be >= 0"):
        build_criterion(TrainConfig(loss=name, loss_options={option: -1.0}))


def test_the_registry_defaults_and_ranges() -> None:
    assert criterion_slug(TrainConfig()) == "girl"
    g = build_criterion(TrainConfig(loss="groupdro"))
    assert isinstance(g, GroupDROLoss) and g.eta == 0.01
    v = build_criterion(TrainConfig(loss="vrex"))
    assert isinstance(v, VRExLoss) and (v.lambda_, v.anneal_steps) == (10.0, 0)
    c = build_criterion(TrainConfig(loss="coral"))
    assert isinstance(c, CORALLoss) and c.weight == 1.0
    with pytest.raises(ValueError, match="anneal_steps.*whole number"):
        build_criterion(TrainConfig(loss="vrex", loss_options={"anneal_steps": 1.5}))


@pytest.mark.parametrize("name", ["groupdro", "vrex"])
def test_state_round_trip(name: str) -> None:
    """Two steps, a save, one more step: a fresh criterion loaded from the save takes the same third step."""
    cfg = TrainConfig(loss=name, loss_options={"anneal_steps": 2} if name == "vrex" else {})
    a, b = build_criterion(cfg), build_criterion(cfg)
    for seed, persons in ((0, [0, 1, 1]), (1, [1, 4, 4])):
        logits, labels, pid = batch(seed, persons)
        a(logits, None, labels, pid)
    saved = {k: v.clone() for k, v in a.state_tensors().items()}
    b.load_state_tensors(saved)
    logits, labels, pid = batch(2, [4, 2, 0, 0])
    fresh = build_criterion(cfg)(logits, None, labels, pid).total
    ta, tb = a(logits, None, labels, pid).total, b(logits, None, labels, pid).total
    assert ta.item() == tb.item() != pytest.approx(fresh.item(), rel=1e-3)  # the state matters for this step
    assert all(torch.equal(a.state_tensors()[k], b.state_tensors()[k]) for k in saved)
    if name == "groupdro":
        assert torch.equal(saved["groupdro_q"], torch.softmax(saved["groupdro_log_w"].masked_fill(
            ~saved["groupdro_seen"], -torch.inf), 0))


# ---------------------------------------------------------------- MixStyle


def mixstyle_reference(x: Tensor, lam: Tensor, perm: Tensor, eps: float = 1e-6) -> Tensor:
    """eq. (4)-(5) as written, in float64: statistics over (T, H, W), population variance."""
    xd = x.double()
    mu = xd.mean(dim=(2, 3, 4), keepdim=True)
    sig = (((xd - mu) ** 2).mean(dim=(2, 3, 4), keepdim=True) + eps).sqrt()
    lm = lam.double().view(-1, 1, 1, 1, 1)
    return (xd - mu) / sig * (lm * sig + (1 - lm) * sig[perm]) + (lm * mu + (1 - lm) * mu[perm])


def clips(b: int = 6) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, 2, 3, 3, generator=g) * torch.rand(b, 4, 1, 1, 1, generator=g) * 3 + torch.randn(
        b, 4, 1, 1, 1, generator=g)


def test_mixstyle_identity_cases() -> None:
    x = clips()
    ms = MixStyle(p=1.0).eval()
    assert ms(x) is x
    assert MixStyle(p=0.0).train()(x) is x
    one = x[:1]
    assert MixStyle(p=1.0).train()(one) is one
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        MixStyle().train()(x[0])


def test_mixstyle_matches_eq_4_5() -> None:
    x = clips().requires_grad_()
    twin = MixStyle(p=1.0, alpha=0.3, seed=5)
    ms = MixStyle(p=1.0, alpha=0.3, seed=5).train()
    drawn = twin.draw(len(x))
    assert drawn is not None
    lam, perm = drawn
    out = ms(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert sorted(perm.tolist()) == list(range(len(x))) and ((lam >= 0) & (lam <= 1)).all()
    torch.testing.assert_close(out.double(), mixstyle_reference(x.detach(), lam, perm), rtol=1e-5, atol=1e-5)
    # the statistics are detached: d out / d x is gamma_mix / sigma per clip and channel
    (grad,) = torch.autograd.grad(out.sum(), x)
    xd = x.detach().double()
    mu = xd.mean(dim=(2, 3, 4), keepdim=True)
    sig = (((xd - mu) ** 2).mean(dim=(2, 3, 4), keepdim=True) + 1e-6).sqrt()
    lm = lam.view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(grad.double(), ((lm * sig + (1 - lm) * sig[perm]) / sig).expand_as(xd),
                               rtol=1e-5, atol=1e-6)
    # the draws come from the module's own stream: torch's global generator is untouched
    state = torch.get_rng_state()
    assert twin.draw(len(x)) is not None
    assert torch.equal(torch.get_rng_state(), state)


def test_mixstyle_stream_is_deterministic_and_in_the_state_dict() -> None:
    x = clips(8)
    a, b = MixStyle(p=0.5, seed=1).train(), MixStyle(p=0.5, seed=1).train()
    outs_a = [a(x) for _ in range(5)]
    c = MixStyle(p=0.5, seed=99).train()
    c.load_state_dict(a.state_dict())  # a resumed run continues the stream
    for o in outs_a:
        torch.testing.assert_close(b(x), o)
    torch.testing.assert_close(c(x), b(x))
    assert any(o is x for o in outs_a) and any(o is not x for o in outs_a)  # p = 0.5: both happen in 5 calls


def test_mixstyle_crossdomain_swaps_the_halves() -> None:
    ms = MixStyle(p=1.0, mix="crossdomain")
    for b in (2, 6, 7):
        drawn = ms.draw(b)
        assert drawn is not None
        perm = drawn[1].tolist()
        h = b // 2
        assert sorted(perm) == list(range(b))
        assert all(p >= h for p in perm[:b - h]) and all(p < h for p in perm[b - h:])


def test_mixstyle_config_stages_are_checked() -> None:
    for bad in ((0,), (1, 5)):
        with pytest.raises(ValueError, match="stages 1..4"):
            MixStyleConfig(stages=bad)
    assert MixStyleConfig(stages=(1, 4)).stages == (1, 4)


def test_piumrnet_with_mixstyle() -> None:
    """x3d_tiny with MixStyle (p = 1) after stages 1 and 2: same weights as without it, a different output in
    training mode, the same in eval mode. TFAM off and dropout 0, so that nothing else is random."""
    off_cfg = ModelConfig(backbone="x3d_tiny", frames=4, crop=32, num_classes=5, dropout=0.0,
                          tfam=TFAMConfig(enabled=False))
    torch.manual_seed(0)
    on = PIUmrNet(off_cfg.model_copy(update={"mixstyle": MixStyleConfig(enabled=True, p=1.0)}))
    off = PIUmrNet(off_cfg)
    res = off.load_state_dict(on.state_dict(), strict=False)
    assert res.missing_keys == [] and res.unexpected_keys == ["mixstyle.rng_state"]
    x = torch.randn(4, 3, 4, 32, 32)
    on_e, off_e = copy.deepcopy(on).eval(), copy.deepcopy(off).eval()
    with torch.no_grad():
        torch.testing.assert_close(on_e(x).logits, off_e(x).logits, rtol=0, atol=0)
        y_on, y_off = on.train()(x), off.train()(x)
    assert y_on.logits.shape == (4, 5) and not torch.allclose(y_on.logits, y_off.logits, atol=1e-4)
    with torch.device("meta"):  # how a checkpoint's shapes are checked (piumr.checkpoint)
        shapes = {k: tuple(v.shape) for k, v in PIUmrNet(on.cfg).state_dict().items()}
    assert shapes["mixstyle.rng_state"] == tuple(on.mixstyle.rng_state.shape)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_one_training_step_through_the_recipe(name: str) -> None:
    """x3d_tiny with MixStyle ("crossdomain") and each criterion: one ``train_step`` with persons, in float32 and
    under bf16 autocast; finite losses, the criterion's state on the CPU."""
    from piumr.config import PRESETS, with_overrides
    from piumr.recipe import build_optimizer, train_step

    cfg = with_overrides(PRESETS["tiny"], {"loss": name, "model.mixstyle.enabled": True,
                                           "model.mixstyle.mix": "crossdomain", "model.tfam.enabled": False})
    net, crit = PIUmrNet(cfg.model), build_criterion(cfg)
    opt = build_optimizer(net, cfg.optim, cfg.speed, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 4, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)
    for amp in (False, True):
        _, parts = train_step(net, crit, opt, x, y, torch.tensor([0, 0, 1, 1]), amp=amp)
        assert all(bool(torch.isfinite(v)) for v in parts.logs.values())
    assert all(t.device.type == "cpu" for t in crit.state_tensors().values())
