"""MixStyle for video features (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021, eq. 4-5; the two
partner choices of Dassl's implementation): a baseline of the person-shift suite, applied by ``PIUmrNet`` after
the backbone stages ``ModelConfig.mixstyle.stages``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from piumr.config import MixStyleConfig

__all__ = ["MixStyle", "Mix"]

Mix = Literal["random", "crossdomain"]


class MixStyle(nn.Module):
    """(B, C, T, H, W) -> (B, C, T, H, W): mixes each clip's per-channel feature statistics with a partner's.

    In training mode, with probability ``p`` per call (and B >= 2), eq. (4)-(5) with the statistics over (T, H, W)
    in place of the paper's (H, W):

        mu = mean_thw(x) (B, C),  sigma = sqrt(var_thw(x) + eps) (B, C)       (population variance; detached)
        lam_b ~ Beta(alpha, alpha) per clip,  b' = perm(b)
        gamma_mix = lam * sigma + (1 - lam) * sigma[perm],  beta_mix = lam * mu + (1 - lam) * mu[perm]
        out = gamma_mix * (x - mu) / sigma + beta_mix

    computed as x * (gamma_mix / sigma) + (beta_mix - mu * gamma_mix / sigma), the same expression with one pass
    over x. Partners (``mix``): "random", a random permutation of the batch; "crossdomain", the halves swapped
    (clips 0..B//2-1 take partners among B//2..B-1 and the reverse, each half's order shuffled; with B odd, one
    clip of the second half is paired inside it), which mixes across domains when the batch holds one domain per
    half (Dassl's assumption; a batch drawn at random has no such order). Eval mode, B < 2 or the draw of 1 - p:
    identity.

    Deviations from Dassl: sigma from the population variance as eq. (2) writes it (Dassl: the unbiased variance,
    a factor n / (n - 1) inside the root, n = T H W); statistics in float32 whatever x's dtype.

    The random draws (apply or not, partners, lam) come from the module's own stream, seeded with ``seed`` (not
    from torch's global generator); its state is the buffer ``rng_state`` (uint8, CPU generator state), so the
    model's state dict, and a checkpoint of it, carries it and a resumed run continues the same stream. Each
    applied call reads it back to the CPU (one host sync on a GPU).
    """

    rng_state: Tensor

    def __init__(self, p: float = 0.5, alpha: float = 0.1, mix: Mix = "random", *, eps: float = 1e-6,
                 seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"MixStyle: p must be in [0, 1], got {p}")
        if not alpha > 0.0:
            raise ValueError(f"MixStyle: alpha must be > 0, got {alpha}")
        if mix not in ("random", "crossdomain"):
            raise ValueError(f"MixStyle: mix must be 'random' or 'crossdomain', got {mix!r}")
        if not eps > 0.0:
            raise ValueError(f"MixStyle: eps must be > 0, got {eps}")
        self.p, self.alpha, self.mix_mode, self.eps = float(p), float(alpha), mix, float(eps)
        self.register_buffer("rng_state", torch.Generator().manual_seed(seed).get_state())

    @classmethod
    def from_config(cls, cfg: MixStyleConfig, seed: int = 0) -> MixStyle:
        """From a ``MixStyleConfig`` (``enabled`` and ``stages`` are the caller's business)."""
        return cls(cfg.p, cfg.alpha, cfg.mix, seed=seed)

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, mix={self.mix_mode!r}, eps={self.eps}"

    def partners(self, batch: int, generator: torch.Generator) -> Tensor:
        """perm (batch,) int64: the clip whose statistics clip b mixes with, drawn from ``generator``."""
        if self.mix_mode == "random":
            return torch.randperm(batch, generator=generator)
        h = batch // 2
        first, second = torch.arange(h), torch.arange(h, batch)
        return torch.cat([second[torch.randperm(batch - h, generator=generator)],
                          first[torch.randperm(h, generator=generator)]])

    def draw(self, batch: int) -> tuple[Tensor, Tensor] | None:
        """One call's draws from the module's stream (advancing it): None (leave x as it is, probability 1 - p),
        else (lam (batch,) float64 in [0, 1], perm (batch,) int64), both on the CPU."""
        g = torch.Generator()
        g.set_state(self.rng_state.cpu())
        try:
            if float(torch.rand((), generator=g, dtype=torch.float64)) >= self.p:
                return None
            perm = self.partners(batch, g)
            # torch's Beta sampler draws from the global CPU generator: run it on this stream's state, and leave
            # the global generator as it was
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(g.get_state())
                a = torch.tensor(self.alpha, dtype=torch.float64)
                lam = torch.distributions.Beta(a, a).sample((batch,)).clamp(0.0, 1.0)
                g.set_state(torch.get_rng_state())
            return lam, perm
        finally:
            self.rng_state.copy_(g.get_state())

    def mix(self, x: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
        """eq. (4)-(5) for given draws: x (B, C, T, H, W), lam (B,) in [0, 1], perm (B,) -> (B, C, T, H, W), in
        x's dtype; the statistics are detached, so the gradient to x is gamma_mix / sigma (B, C) per clip."""
        if x.dim() != 5:
            raise ValueError(f"MixStyle expects (B, C, T, H, W), got {tuple(x.shape)}")
        var, mu = torch.var_mean(x.detach().float(), dim=(2, 3, 4), keepdim=True, correction=0)  # (B, C, 1, 1, 1)
        sigma = (var + self.eps).sqrt()
        lam = lam.to(x.device, torch.float32).view(-1, 1, 1, 1, 1)
        perm = perm.to(x.device)
        gamma_mix = lam * sigma + (1.0 - lam) * sigma[perm]
        beta_mix = lam * mu + (1.0 - lam) * mu[perm]
        scale = gamma_mix / sigma
        return x * scale.to(x.dtype) + (beta_mix - mu * scale).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T, H, W) -> (B, C, T, H, W); identity in eval mode, for B < 2 and with probability 1 - p."""
        if x.dim() != 5:
            raise ValueError(f"MixStyle expects (B, C, T, H, W), got {tuple(x.shape)}")
        if not self.training or x.shape[0] < 2:
            return x
        drawn = self.draw(x.shape[0])
        return x if drawn is None else self.mix(x, *drawn)
