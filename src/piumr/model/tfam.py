"""Temporal-Frequency Alignment Module (TFAM), paper §3.1, eq. (1)-(5).

Layout convention: tensors are (B, C, T, H, W) as Conv3d and X3D want them;
the paper's x[b, t, c, h, w] is x[b, c, t, h, w] here.

``TFAM(channels=C)`` maps (B, C, T, H, W) -> (B, C, T, H, W) for any C, T, H, W
and can be placed after any stage of any 3-D CNN. Every choice the paper leaves
open is listed in ``docs/method_fidelity.md``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from piumr.config import TFAMConfig

__all__ = ["TFAM", "FrequencyBranch", "TemporalBranch", "DyT", "dct_bank", "sinkhorn"]

# Every keyword default below is read from TFAMConfig, the one source of TFAM's defaults
# (tests/test_tfam.py::test_defaults_match_config fails if a signature drifts from it).
_D = TFAMConfig()
ROW_LEN = 16  # tokens="rows": A_t rows are resampled to the paper's clip length (§4.1: 16 frames)


def dct_bank(num: int, kernel: int) -> Tensor:
    """The ``num`` lowest-frequency orthonormal 2-D DCT-II basis filters.

    Returns (num, kernel, kernel), bases in zig-zag order (by u + v, then u).
    Raises ``ValueError`` when ``num > kernel**2``.
    """
    if num > kernel * kernel:
        raise ValueError(f"num_dct={num} exceeds the {kernel * kernel} bases of a {kernel}x{kernel} DCT")
    n = torch.arange(kernel, dtype=torch.float64)
    freqs = sorted(((u, v) for u in range(kernel) for v in range(kernel)), key=lambda p: (p[0] + p[1], p[0]))
    out = torch.empty(num, kernel, kernel, dtype=torch.float64)
    for d, (u, v) in enumerate(freqs[:num]):
        cu = math.sqrt((1 if u == 0 else 2) / kernel)
        cv = math.sqrt((1 if v == 0 else 2) / kernel)
        bu = cu * torch.cos(math.pi * (2 * n + 1) * u / (2 * kernel))
        bv = cv * torch.cos(math.pi * (2 * n + 1) * v / (2 * kernel))
        out[d] = bu[:, None] * bv[None, :]
    return out.float()


def sinkhorn(k: Tensor, iters: int) -> Tensor:
    """Sinkhorn-Knopp normalisation towards a doubly-stochastic matrix.

    k: (B, T, T) positive. Alternates row and column normalisation ``iters``
    times (ending on columns). Returns (B, T, T).
    """
    for _ in range(iters):
        k = k / k.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        k = k / k.sum(dim=-2, keepdim=True).clamp_min(1e-12)
    return k


class DyT(nn.Module):
    """Adaptive tanh ``gamma * tanh(a * x) + b`` (Zhu et al. 2025), per channel.

    x: (B, D, H, W) -> (B, D, H, W). ``a`` is a learnable scalar, ``gamma`` and
    ``b`` learnable per channel.
    """

    def __init__(self, channels: int, init: float = 0.5) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(init)))
        self.gamma = nn.Parameter(torch.ones(channels))
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma[:, None, None] * torch.tanh(self.a * x) + self.b[:, None, None]


class FrequencyBranch(nn.Module):
    """Spectral robustness with perturbation, §3.1.1, eq. (1)-(2)."""

    dct: Tensor

    def __init__(
        self, channels: int, *, num_dct: int = _D.num_dct, dct_kernel: int = _D.dct_kernel, beta: float = _D.beta,
        alpha: float = _D.alpha, eps_low: float = _D.eps_low, eps_high: float = _D.eps_high,
        dyt_init: float = _D.dyt_init, attn_kernel: int = _D.attn_kernel,
    ) -> None:
        super().__init__()
        self.num_dct, self.beta, self.alpha = num_dct, beta, alpha
        self.eps_low, self.eps_high = eps_low, eps_high
        # C -> D: the paper does not say how C channels become D spectral channels.
        self.proj = nn.Conv2d(channels, num_dct, kernel_size=1, bias=False)
        self.pad = dct_kernel // 2
        self.register_buffer("dct", dct_bank(num_dct, dct_kernel)[:, None], persistent=False)
        self.dyt = DyT(num_dct, dyt_init)
        self.attn = nn.Conv2d(num_dct, 1, kernel_size=attn_kernel, padding="same")

    def spectrum(self, x: Tensor) -> Tensor:
        """eq. (1): x (B, C, T, H, W) -> E (B, D, H, W) (temporal mean, then DCT bank)."""
        xm = self.proj(x.mean(dim=2))
        h, w = xm.shape[-2:]
        e = F.conv2d(xm, self.dct.to(xm.dtype), padding=self.pad, groups=self.num_dct)
        return e[..., :h, :w]  # "same" size for odd and even kernels

    def spectral_variance(self, e: Tensor) -> Tensor:
        """Var_{h,w}(E_d): (B, D, H, W) -> (B, D, 1, 1) (population variance)."""
        return e.float().var(dim=(2, 3), keepdim=True, unbiased=False).to(e.dtype)

    def noise_scale(self, var: Tensor) -> Tensor:
        """eps_d = clamp(Var_hw(E_d), eps_low, eps_high): (B, D, 1, 1)."""
        return var.clamp(self.eps_low, self.eps_high)

    def attention(self, x: Tensor, e: Tensor | None = None) -> Tensor:
        """A_s = sigmoid(Conv2D(E_rob)): x (B, C, T, H, W) -> (B, 1, H, W)."""
        e = self.spectrum(x) if e is None else e
        var = self.spectral_variance(e)
        e_var = self.beta * var * torch.sign(e)  # variance-weighted modulation
        total = e + e_var
        if self.training:  # stochastic, variance-scaled perturbation: training only
            total = total + self.alpha * self.noise_scale(var) * torch.randn_like(e)
        e_rob = self.dyt(total)
        return torch.sigmoid(self.attn(e_rob))

    def forward(self, x: Tensor) -> Tensor:
        """eq. (2): x_s = x * Broadcast_T^C(A_s) + x; (B, C, T, H, W) -> same."""
        a_s = self.attention(x)
        return x * a_s[:, :, None] + x


def _frame_affinity(desc: Tensor) -> Tensor:
    """Cosine affinity between frame descriptors: (B, C, T) -> (B, T, T)."""
    d = F.normalize(desc, dim=1, eps=1e-6)
    return torch.einsum("bct,bcs->bts", d, d)


def _row_col_var(k: Tensor) -> Tensor:
    """Mean row- and column-variance of kernels: (B, T, T) -> (B, 2)."""
    return torch.stack([k.var(dim=-1, unbiased=False).mean(-1), k.var(dim=-2, unbiased=False).mean(-1)], dim=-1)


class TemporalBranch(nn.Module):
    """Consistent dynamics via regularised transport, §3.1.2, eq. (3)-(4).

    Two choices the paper leaves open decide whether the gate can tell frames apart
    at initialisation (measured on the smoke model, docs/method_fidelity.md):

    * ``kernel_scale="frames"`` feeds ``T * K_mix - 1`` to ``A_t = sigmoid(Gamma * . + beta)``:
      a (near) doubly-stochastic K_mix has entries ~1/T, so the literal
      ``sigmoid(K_mix)`` is ~0.5 everywhere; scaled, a uniform kernel maps to 0 and
      the transport structure spans the sigmoid's range. ``"none"`` is the literal form.
    * ``tokens="centred"``: A_t transports the frame descriptors after removing their
      mean over T, so tokens differ by what A_t does, not by a shared mean;
      ``"mean"`` is the first reading (``A_t @ a / T``, all tokens ~ the clip mean);
      ``"rows"`` is the literal SelfAttn(Linear(A_t)): A_t's rows are the tokens (resampled
      to ``ROW_LEN`` = the paper's 16 frames when T differs), so the gate sees the input
      only through A_t.
    """

    def __init__(
        self, channels: int, *, tau_min: float = _D.tau_min, tau_scale: float = _D.tau_scale,
        sinkhorn_iters: int = _D.sinkhorn_iters, gamma_w: float = _D.gamma_w, attn_dim: int = _D.attn_dim,
        attn_heads: int = _D.attn_heads, kernel_scale: Literal["frames", "none"] = _D.kernel_scale,
        gate_scale_init: float = _D.gate_scale_init, tokens: Literal["centred", "mean", "rows"] = _D.tokens,
    ) -> None:
        super().__init__()
        if attn_dim % attn_heads:
            raise ValueError(f"attn_dim={attn_dim} is not divisible by attn_heads={attn_heads}")
        self.tau_min, self.tau_scale = tau_min, tau_scale
        self.sinkhorn_iters, self.gamma_w = sinkhorn_iters, gamma_w
        self.kernel_scale, self.tokens = kernel_scale, tokens
        # lambda_g, lambda_l "predicted from row-column variances": zero init -> 0.5 / 0.5
        self.mix = nn.Linear(4, 2)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)
        self.scale = nn.Parameter(torch.tensor(float(gate_scale_init)))  # Gamma in A_t = sigmoid(Gamma K + beta)
        self.shift = nn.Parameter(torch.tensor(0.0))  # beta
        self.proj = nn.Linear(ROW_LEN if tokens == "rows" else channels, attn_dim)  # "linear projection"
        self.attn = nn.MultiheadAttention(attn_dim, attn_heads, batch_first=True)  # "self-attention block"
        self.norm = nn.LayerNorm(attn_dim)
        self.out = nn.Linear(attn_dim, 1)

    def kernels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """eq. (3) and the transport kernels: x (B, C, T, H, W) -> (K_mix, A_t), each (B, T, T).

        Computed in float32 whatever the autocast state (T x T maps are tiny).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            m_avg = _frame_affinity(xf.mean(dim=(3, 4)))
            m_max = _frame_affinity(xf.amax(dim=(3, 4)))
            m_avg = m_avg - m_avg.mean(dim=(1, 2), keepdim=True)  # mean-centring
            m_max = m_max - m_max.mean(dim=(1, 2), keepdim=True)
            joint = 0.5 * (m_avg.var(dim=(1, 2), unbiased=False) + m_max.var(dim=(1, 2), unbiased=False))
            tau = (self.tau_min + self.tau_scale * torch.sqrt(joint + 1e-6))[:, None, None]  # eq. (3)
            k_g = torch.softmax(-m_avg.pow(2) / tau, dim=-1)
            k_l = torch.softmax(-m_max.pow(2) / tau, dim=-1)
            k_g = sinkhorn(0.5 * (k_g + k_g.transpose(1, 2)), self.sinkhorn_iters)
            k_l = sinkhorn(0.5 * (k_l + k_l.transpose(1, 2)), self.sinkhorn_iters)
            lam = torch.softmax(self.mix(torch.cat([_row_col_var(k_g), _row_col_var(k_l)], dim=-1)), dim=-1)
            k_mix = lam[:, 0, None, None] * k_g + lam[:, 1, None, None] * k_l
            dev = (k_mix - k_mix.mean(dim=-1, keepdim=True)).abs().mean(dim=-1, keepdim=True)
            k_mix = k_mix - self.gamma_w * dev  # Wasserstein-style deviation penalty
            k_in = k_mix * k_mix.shape[-1] - 1.0 if self.kernel_scale == "frames" else k_mix
            a_t = torch.sigmoid(self.scale * k_in + self.shift)
        return k_mix, a_t

    def attention(self, x: Tensor) -> Tensor:
        """Per-frame gate: x (B, C, T, H, W) -> (B, T) in (0, 1).

        A_t (B, T, T) transports the frame descriptors (tokens_t = sum_s A_t[t, s] a_s,
        a_s the spatial-average descriptor, centred over T by default), then
        Linear + self-attention + Linear(->1).
        """
        _, a_t = self.kernels(x)
        desc = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T, C)
        if self.tokens == "rows":  # A_t's rows (B, T, T) as the tokens, resampled to (B, T, ROW_LEN)
            rows = a_t if a_t.shape[-1] == ROW_LEN else F.interpolate(a_t, size=ROW_LEN, mode="linear",
                                                                         align_corners=True)
            tokens = rows.to(desc.dtype)
        elif self.tokens == "centred":
            tokens = torch.bmm(a_t.to(desc.dtype), desc - desc.mean(dim=1, keepdim=True))
        else:
            tokens = torch.bmm(a_t.to(desc.dtype), desc) / a_t.shape[-1]
        h = self.proj(tokens)
        h = h + self.attn(self.norm(h), self.norm(h), self.norm(h), need_weights=False)[0]
        return torch.sigmoid(self.out(h)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """eq. (4): x_t = x * Broadcast_C^{H,W}(gate) + x; (B, C, T, H, W) -> same."""
        gate = self.attention(x)
        return x * gate[:, None, :, None, None].to(x.dtype) + x


def _cos_to_unit(cos: Tensor, mode: Literal["shifted", "clamped"]) -> Tensor:
    return (1.0 + cos) / 2.0 if mode == "shifted" else cos.clamp_min(0.0)


class TFAM(nn.Module):
    """Temporal-Frequency Alignment Module: (B, C, T, H, W) -> (B, C, T, H, W).

    Args:
        channels: C of the feature map it is placed on.
        frequency / temporal: enable each branch (Table 3 settings b-e).
        fusion: "consistency" (eq. 5, perturbation-stability weights) or "mean".
        Remaining keywords: see ``piumr.config.TFAMConfig``, the one source of every
        default here (all marked "not in paper" there).

    Consistency fusion weighs each clip by its own (lambda_t, lambda_s) (``fusion_lambda="sample"``), in
    training and in eval alike; eval draws its perturbations from a fixed seed, so it is deterministic.
    ``fusion_lambda="batch"`` is the first reading: the batch mean in training and, in eval, an
    exponential moving average of it collected in training (like BatchNorm statistics).
    """

    lam: Tensor

    def __init__(
        self, channels: int, *, frequency: bool = _D.frequency, temporal: bool = _D.temporal,
        fusion: Literal["consistency", "mean"] = _D.fusion, num_dct: int = _D.num_dct,
        dct_kernel: int = _D.dct_kernel, beta: float = _D.beta, alpha: float = _D.alpha,
        eps_low: float = _D.eps_low, eps_high: float = _D.eps_high, dyt_init: float = _D.dyt_init,
        attn_kernel: int = _D.attn_kernel, tau_min: float = _D.tau_min, tau_scale: float = _D.tau_scale,
        sinkhorn_iters: int = _D.sinkhorn_iters, gamma_w: float = _D.gamma_w, attn_dim: int = _D.attn_dim,
        attn_heads: int = _D.attn_heads, kernel_scale: Literal["frames", "none"] = _D.kernel_scale,
        gate_scale_init: float = _D.gate_scale_init, tokens: Literal["centred", "mean", "rows"] = _D.tokens,
        temporal_perturb: Literal["shuffle", "mask"] = _D.temporal_perturb, mask_ratio: float = _D.mask_ratio,
        stability_pool: Literal["frame", "global"] = _D.stability_pool,
        fusion_momentum: float = _D.fusion_momentum, fusion_grad: bool = _D.fusion_grad,
        fusion_cos: Literal["shifted", "clamped"] = _D.fusion_cos,
        stability_on: Literal["kept", "all"] = _D.stability_on, fusion_lambda: Literal["sample", "batch"] = _D.fusion_lambda,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if not (frequency or temporal):
            raise ValueError("TFAM needs at least one branch (frequency or temporal)")
        self.channels, self.fusion = channels, fusion
        self.temporal_perturb, self.mask_ratio, self.stability_pool = temporal_perturb, mask_ratio, stability_pool
        self.fusion_momentum, self.fusion_grad, self.fusion_cos, self.eps = fusion_momentum, fusion_grad, fusion_cos, eps
        self.stability_on, self.fusion_lambda = stability_on, fusion_lambda
        self.last_lam: Tensor | None = None  # (B, 2) per-clip fusion weights of the last consistency forward
        self.freq: FrequencyBranch | None = (
            FrequencyBranch(channels, num_dct=num_dct, dct_kernel=dct_kernel, beta=beta, alpha=alpha,
                            eps_low=eps_low, eps_high=eps_high, dyt_init=dyt_init, attn_kernel=attn_kernel)
            if frequency else None
        )
        self.temp: TemporalBranch | None = (
            TemporalBranch(channels, tau_min=tau_min, tau_scale=tau_scale, sinkhorn_iters=sinkhorn_iters,
                           gamma_w=gamma_w, attn_dim=attn_dim, attn_heads=attn_heads, kernel_scale=kernel_scale,
                           gate_scale_init=gate_scale_init, tokens=tokens)
            if temporal else None
        )
        # running (lambda_t, lambda_s) used at eval time; starts at the mean fusion
        self.register_buffer("lam", torch.tensor([0.5, 0.5]))

    @classmethod
    def from_config(cls, channels: int, cfg: TFAMConfig) -> TFAM:
        """A TFAM for ``channels`` from a ``TFAMConfig`` (``enabled``/``stage`` are the caller's business)."""
        return cls(channels, **cfg.model_dump(exclude={"enabled", "stage"}))

    def _generator(self, x: Tensor) -> torch.Generator | None:
        """Eval: a fixed-seed stream (deterministic fusion, the same perturbation for every clip of a
        batch, so a clip's weights do not depend on its batch-mates); training: the global RNG."""
        return None if self.training else torch.Generator(device=x.device).manual_seed(0)

    def _keep_mask(self, x: Tensor) -> Tensor:
        """Frames "mask" keeps: (B, T) in {0, 1}; round(mask_ratio * T) zeros per clip, at least one and
        never all (T >= 2). Training: drawn per clip; eval: one fixed draw shared by the batch."""
        b, t = x.shape[0], x.shape[2]
        n_mask = min(max(1, round(self.mask_ratio * t)), t - 1) if t > 1 else 0
        gen = self._generator(x)
        r = torch.rand(1 if gen is not None else b, t, device=x.device, generator=gen).expand(b, t)
        masked = torch.zeros(b, t, dtype=torch.bool, device=x.device)
        masked.scatter_(1, r.argsort(dim=1)[:, :n_mask], True)
        return (~masked).to(x.dtype)

    def _perturb_frames(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Temporal perturbation x_hat_t (§3.1.3): random frame shuffle or mask (``keep`` (B, T), drawn by
        ``_keep_mask`` when None). Same shape as x (B, C, T, H, W)."""
        t = x.shape[2]
        if self.temporal_perturb == "shuffle":
            return x[:, :, torch.randperm(t, device=x.device, generator=self._generator(x))]
        keep = self._keep_mask(x) if keep is None else keep
        return x * keep[:, None, :, None, None]

    def _pool_t(self, y: Tensor) -> Tensor:
        """Max-pool a temporal-branch output for s_t: (B, C, T, H, W) -> (B, C*T) or (B, C)."""
        if self.stability_pool == "frame":  # order-aware: one max per channel and frame
            return y.float().amax(dim=(3, 4)).flatten(1)
        return y.float().amax(dim=(2, 3, 4))  # literal reading: one max per channel

    def _spectral_noise(self, e: Tensor) -> Tensor:
        """Variance-scaled noise for x_hat_s: (B, D, H, W) (eval: one fixed draw shared by the batch)."""
        assert self.freq is not None
        gen = self._generator(e)
        shape = e.shape if gen is None else (1, *e.shape[1:])
        z = torch.randn(shape, device=e.device, dtype=e.dtype, generator=gen)
        return self.freq.noise_scale(self.freq.spectral_variance(e)) * z

    def stability_scores(self, x: Tensor, x_t: Tensor | None = None, e: Tensor | None = None,
                         a_s: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw stability cosines (s_t, s_s) of §3.1.3, each (B,), in [-1, 1].

        x (B, C, T, H, W) the input; x_t its temporal-branch output, e (B, D, H, W) its spectrum and
        a_s (B, 1, H, W) its spatial attention (each computed here when None).

        ``stability_on="kept"`` (default): each branch's modulation, phi(x) - x, is compared on what the
        perturbation left: s_t over the kept frames (per-frame spatial max, masked frames zeroed in both),
        s_s between x * A_s(E) and x * A_s(E + noise). An identity branch has no modulation (s = 0), a
        branch that ignores its input gives s = 1. ``"all"``: the first reading, phi_t's whole output over
        all frames (so s_t mostly measures the mask ratio) and the spectrum E against E + noise (the
        frequency branch itself is not involved).
        """
        assert self.temp is not None and self.freq is not None
        e = self.freq.spectrum(x) if e is None else e
        if self.stability_on == "all":
            x_t = self.temp(x) if x_t is None else x_t
            x_hat: Tensor = self.temp(self._perturb_frames(x))
            s_t = F.cosine_similarity(self._pool_t(x_t), self._pool_t(x_hat), dim=1)
            e_hat = e + self._spectral_noise(e)
            s_s = F.cosine_similarity(e.float().mean(dim=(2, 3)), e_hat.float().mean(dim=(2, 3)), dim=1)
            return s_t, s_s
        keep = self._keep_mask(x) if self.temporal_perturb == "mask" else torch.ones_like(x[:, 0, :, 0, 0])
        x_p = self._perturb_frames(x, keep)
        gate, gate_hat = self.temp.attention(x), self.temp.attention(x_p)
        k = keep[:, None, :]  # (B, 1, T)
        m_t = (x.float() * gate[:, None, :, None, None]).amax(dim=(3, 4)) * k  # (B, C, T)
        m_t_hat = (x_p.float() * gate_hat[:, None, :, None, None]).amax(dim=(3, 4)) * k
        s_t = F.cosine_similarity(m_t.flatten(1), m_t_hat.flatten(1), dim=1, eps=1e-12)
        a_s = self.freq.attention(x, e) if a_s is None else a_s
        a_hat = self.freq.attention(x, e + self._spectral_noise(e))
        m_s = (x.float() * a_s[:, :, None]).amax(dim=(3, 4)).flatten(1)
        m_s_hat = (x.float() * a_hat[:, :, None]).amax(dim=(3, 4)).flatten(1)
        s_s = F.cosine_similarity(m_s, m_s_hat, dim=1, eps=1e-12)
        return s_t, s_s

    def fusion_weights(self, x: Tensor, x_t: Tensor | None = None, e: Tensor | None = None,
                       a_s: Tensor | None = None) -> Tensor:
        """Per-clip (lambda_t, lambda_s) from branch stability (§3.1.3): (B, 2), rows sum to 1."""
        s_t, s_s = self.stability_scores(x, x_t, e, a_s)
        s_t, s_s = _cos_to_unit(s_t, self.fusion_cos), _cos_to_unit(s_s, self.fusion_cos)
        # normalised so lambda_t + lambda_s == 1 exactly; equal weights when both are 0
        denom = s_t + s_s + 2 * self.eps
        return torch.stack([(s_t + self.eps) / denom, (s_s + self.eps) / denom], dim=1)

    def _stability(self, x: Tensor, x_t: Tensor, e: Tensor | None) -> Tensor:
        """(lambda_t, lambda_s) batch-averaged: (2,) (the ``fusion_lambda="batch"`` form)."""
        return self.fusion_weights(x, x_t, e).mean(dim=0)

    def _lambda(self, x: Tensor, x_t: Tensor, e: Tensor, a_s: Tensor) -> Tensor:
        """The fusion weights for this forward: (B, 2) per clip, or (1, 2) for the batch-mean/EMA form."""
        if self.fusion_lambda == "batch" and not self.training:
            return self.lam[None]
        if self.fusion_grad:
            lam = self.fusion_weights(x, x_t, e, a_s)
        else:
            with torch.no_grad():
                lam = self.fusion_weights(x.detach(), x_t.detach(), e.detach(), a_s.detach())
        self.last_lam = lam.detach()
        if self.fusion_lambda == "sample":
            return lam
        with torch.no_grad():
            self.lam.lerp_(lam.detach().mean(dim=0).to(self.lam.dtype), self.fusion_momentum)
        return lam.mean(dim=0, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T, H, W) -> x_out (B, C, T, H, W), eq. (5)."""
        if x.dim() != 5 or x.shape[1] != self.channels:
            raise ValueError(f"TFAM(channels={self.channels}) expects (B, {self.channels}, T, H, W), got {tuple(x.shape)}")
        if self.freq is None:
            assert self.temp is not None
            out: Tensor = self.temp(x)
            return out
        e = self.freq.spectrum(x)
        a_s = self.freq.attention(x, e)
        x_s = x * a_s[:, :, None] + x
        if self.temp is None:
            return x_s
        x_t: Tensor = self.temp(x)
        if self.fusion == "mean":
            return 0.5 * (x_t + x_s)
        lam = self._lambda(x, x_t, e, a_s).to(x.dtype)
        return lam[:, 0, None, None, None, None] * x_t + lam[:, 1, None, None, None, None] * x_s
