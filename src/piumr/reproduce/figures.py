"""The paper's figures (Fig. 4-6) and the person-shift figure: matplotlib (Agg, no pyplot), PNG + PDF.

Plot functions take plain arrays (what to draw) and a file stem (where to
draw it) and return the written paths; the model-dependent computations
(``cosine_similarities``, ``loss_landscape``, ``tsne_2d``) are separate so
they can be tested and reused.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from piumr.data.ma52 import ACTION_TO_BODY, BODY_NAMES
from piumr.files import atomic_write

__all__ = [
    "save_figure", "subsample", "tsne_2d", "tsne_figure", "cosine_similarities", "similarity_figure",
    "similarity_title",
    "random_directions", "loss_landscape", "landscape_title", "landscape_figure", "participant_figure", "wrap_label", "figure_note",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_BODY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def save_figure(fig: Figure, stem: Path, banner: str | None = None) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``; returns both paths.

    ``banner``: a line printed in red across the bottom (e.g. "synthetic data, not MA-52")."""
    if banner:  # under everything drawn so far (long tick labels reach below the figure)
        renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]
        bottom = fig.get_tightbbox(renderer).y0 / fig.get_figheight()
        fig.text(0.5, min(-0.02, bottom - 0.02), banner, ha="center", va="top", color="#b00000", fontsize=10,
                 fontweight="bold")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    atomic_write(paths[0], lambda tmp: fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight"))
    atomic_write(paths[1], lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    return paths


def subsample(n: int, max_points: int, seed: int = 0) -> IntArray:
    """Sorted indices of at most ``max_points`` of ``n`` items (all when ``n <= max_points``)."""
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Fig. 4: t-SNE
# ----------------------------------------------------------------------------------------------
def tsne_2d(emb: npt.ArrayLike, seed: int = 0) -> FloatArray:
    """t-SNE (scikit-learn, PCA init) of embeddings ``(N, D)`` -> ``(N, 2)``; perplexity min(30, (N-1)/3)."""
    from sklearn.manifold import TSNE

    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE needs embeddings (N >= 4, D), got shape {x.shape}")
    perplexity = float(min(30.0, (x.shape[0] - 1) / 3.0))
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return np.asarray(y, dtype=np.float64)


def tsne_figure(points: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], stem: Path, banner: str | None = None) -> list[Path]:
    """One panel per model: ``{name: (xy (N, 2), action labels (N,))}``, coloured by body group (Fig. 4)."""
    fig = Figure(figsize=(5.0 * len(points), 4.6))
    body_of = np.asarray(ACTION_TO_BODY, dtype=np.int64)
    for i, (name, (xy_, labels_)) in enumerate(points.items()):
        xy = np.asarray(xy_, dtype=np.float64)
        body = body_of[np.asarray(labels_, dtype=np.int64)]
        ax = fig.add_subplot(1, len(points), i + 1)
        for b, bname in enumerate(BODY_NAMES):
            sel = body == b
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.75, color=_BODY_COLOURS[b], label=bname,
                           linewidths=0)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == len(points) - 1:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2, frameon=False)
    fig.suptitle("t-SNE of validation embeddings, coloured by body group")
    return save_figure(fig, stem, banner)


# ----------------------------------------------------------------------------------------------
# Fig. 5: cosine similarity distributions
# ----------------------------------------------------------------------------------------------
def cosine_similarities(emb: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Cosine similarities of all pairs ``i < j`` of ``(N, D)`` embeddings: ``(inter-class, intra-class)``.

    Classes are the action ``labels`` (N,). Self-pairs are excluded.
    """
    x = np.asarray(emb, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {x.shape} and {y.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    iu = np.triu_indices(x.shape[0], k=1)
    same = (y[:, None] == y[None, :])[iu]
    vals = sim[iu]
    return vals[~same], vals[same]


def similarity_title(seed: int, seeds: Sequence[int]) -> str:
    """Fig. 5's title: which seed's pairs the histograms show (the finding under it is over every seed)."""
    others = f" (of seeds {', '.join(map(str, seeds))}; the finding below is over every seed)" if len(seeds) > 1 else ""
    return f"Cosine similarity of validation embeddings, seed {seed}{others}"


def similarity_figure(sims: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], stem: Path, banner: str | None = None,
                      title: str = "Cosine similarity of validation embeddings") -> list[Path]:
    """Two panels (inter-class, intra-class) with one density histogram per model (Fig. 5), under ``title``
    (``similarity_title``: the seed drawn)."""
    fig = Figure(figsize=(10.0, 3.8))
    vals = [np.asarray(p[i], dtype=np.float64) for p in sims.values() for i in (0, 1)]
    vals = [v for v in vals if v.size]
    lo = max(-1.0, min((float(v.min()) for v in vals), default=-1.0))
    hi = min(1.0, max((float(v.max()) for v in vals), default=1.0))
    bins = [float(b) for b in np.linspace(lo, hi if hi > lo else lo + 1e-3, 61)]  # the data's range
    for p, (panel, idx) in enumerate((("inter-class pairs", 0), ("intra-class pairs", 1))):
        ax = fig.add_subplot(1, 2, p + 1)
        for name, pair in sims.items():
            v = np.asarray(pair[idx], dtype=np.float64)
            if v.size:
                ax.hist(v, bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                        label=f"{name} (mean {v.mean():.3f})")
        ax.set_title(panel)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no pairs", transform=ax.transAxes, ha="center")
    fig.suptitle(title)
    return save_figure(fig, stem, banner)


# ----------------------------------------------------------------------------------------------
# Fig. 6: loss landscape (Li et al., 2018, filter normalisation)
# ----------------------------------------------------------------------------------------------
def random_directions(model: nn.Module, seed: int = 0) -> list[list[Tensor]]:
    """Two filter-normalised random directions (Li et al., 2018), one tensor per parameter.

    Each direction is Gaussian; every filter (slice along dim 0) of a weight with
    ``dim > 1`` is rescaled to the norm of the same filter of the weight. Biases
    and normalisation parameters (``dim <= 1``) get zero ("ignore bias/BN").
    """
    gen = torch.Generator().manual_seed(seed)
    dirs: list[list[Tensor]] = []
    params = [p.detach() for p in model.parameters()]
    for _ in range(2):
        d_list: list[Tensor] = []
        for p in params:
            if p.dim() <= 1:
                d_list.append(torch.zeros_like(p))
                continue
            d = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(device=p.device, dtype=p.dtype)
            pf, df = p.reshape(p.shape[0], -1), d.reshape(d.shape[0], -1)
            scale = pf.norm(dim=1) / (df.norm(dim=1) + 1e-10)
            d_list.append((df * scale[:, None]).reshape(p.shape))
        dirs.append(d_list)
    return dirs


@torch.no_grad()
def loss_landscape(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *, steps: int = 7,
                   span: float = 1.0, seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """Cross-entropy on ``batches`` over a ``steps x steps`` grid ``theta + a d1 + b d2``, ``a, b`` in [-span, span].

    ``batches``: (video (B, 3, T, H, W), action labels (B,)) on the model's device.
    The model runs in eval mode (BatchNorm running statistics, deterministic TFAM);
    its parameters are restored afterwards. Returns ``(coords (steps,), loss (steps, steps))``,
    ``loss[i, j]`` at ``(a=coords[i], b=coords[j])``.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if not batches:
        raise ValueError("loss_landscape needs at least one batch")
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    d1, d2 = random_directions(model, seed)
    coords = np.linspace(-span, span, steps)
    surface = np.zeros((steps, steps), dtype=np.float64)
    try:
        for i, a in enumerate(coords):
            for j, b in enumerate(coords):
                for p, p0, u, v in zip(params, origin, d1, d2, strict=True):
                    p.copy_(p0 + float(a) * u + float(b) * v)
                total, count = 0.0, 0
                for video, labels in batches:
                    logits = model(video).logits.float()
                    total += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
                    count += int(labels.shape[0])
                surface[i, j] = total / count
    finally:
        for p, p0 in zip(params, origin, strict=True):
            p.copy_(p0)
        model.train(was_training)
    return coords, surface


def landscape_title(seed: int | None, seeds: int) -> str:
    """Fig. 6's title: the method, and with several seeds which one's surfaces are drawn."""
    title = "Loss landscape (filter-normalised random directions, Li et al. 2018)"
    if seeds > 1:
        title += f"\nsurfaces of seed {seed}, 1 of {seeds} seeds; the finding below is over all {seeds}"
    return title


def landscape_figure(surfaces: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], stem: Path, banner: str | None = None,
                     *, seed: int | None = None, seeds: int = 1) -> list[Path]:
    """Contour of each model's loss surface ``{name: (coords, loss)}`` plus a 3-D view (Fig. 6).

    The loss is shown as ``log10`` so both models fit one colour scale. ``seed``: the seed whose surfaces these
    are, of ``seeds`` (the title says so when there are several: the finding is over all of them).
    """
    n = len(surfaces)
    fig = Figure(figsize=(4.6 * n, 8.4))
    logs = {k: np.log10(np.maximum(np.asarray(s, dtype=np.float64), 1e-12)) for k, (_, s) in surfaces.items()}
    lo = min(float(v.min()) for v in logs.values())
    hi = max(float(v.max()) for v in logs.values())
    levels = np.linspace(lo, hi if hi > lo else lo + 1e-6, 16)
    for k, (name, (coords_, _)) in enumerate(surfaces.items()):
        c = np.asarray(coords_, dtype=np.float64)
        a, b = np.meshgrid(c, c, indexing="ij")
        z = logs[name]
        ax3 = fig.add_subplot(2, n, k + 1, projection="3d")
        ax3.plot_surface(a, b, z, cmap="viridis", vmin=lo, vmax=hi, linewidth=0, antialiased=True)
        ax3.set_title(name)
        ax3.set_zlabel("log10 loss")
        ax2 = fig.add_subplot(2, n, n + k + 1)
        cs = ax2.contourf(a, b, z, levels=levels, cmap="viridis")
        ax2.contour(a, b, z, levels=levels, colors="k", linewidths=0.3)
        ax2.set_xlabel("direction 1")
        ax2.set_ylabel("direction 2")
        ax2.set_aspect("equal")
        if k == n - 1:
            fig.colorbar(cs, ax=ax2, label="log10 cross-entropy")
    fig.suptitle(landscape_title(seed, seeds))
    return save_figure(fig, stem, banner)


# ----------------------------------------------------------------------------------------------
# person shift
# ----------------------------------------------------------------------------------------------
def participant_figure(per_participant: Mapping[str, Sequence[float]], stem: Path, banner: str | None = None,
                       chance: float | None = None) -> list[Path]:
    """Per-participant action Top-1 (%) of each model: box plot + the individual persons (jittered).

    ``chance``: chance accuracy (%), drawn as a dashed line. Model names are wrapped (``wrap_label``) so
    long ones do not overlap."""
    names = list(per_participant)
    fig = Figure(figsize=(max(4.0, 2.2 * len(names) + 1.5), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    data = [np.asarray(per_participant[n], dtype=np.float64) for n in names]
    ax.boxplot(data, showmeans=True, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), [wrap_label(n) for n in names], fontsize=8)
    rng = np.random.default_rng(0)
    for i, v in enumerate(data):
        ax.scatter(i + 1 + rng.uniform(-0.12, 0.12, v.size), v, s=12, alpha=0.6, color="k", linewidths=0)
        if v.size:
            ax.annotate(f"worst {v.min():.1f}", (i + 1.28, float(v.min())), fontsize=8, va="center",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    if chance is not None:
        ax.axhline(chance, color="#b00000", linestyle="--", linewidth=1.0, label=f"chance ({chance:.1f} %)")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_ylabel("action Top-1 per held-out participant (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Person-disjoint split: per-participant accuracy")
    return save_figure(fig, stem, banner)


def wrap_label(name: str, width: int = 22) -> str:
    """``name`` broken into lines of at most ``width`` characters (at spaces) for an axis tick."""
    return "\n".join(textwrap.wrap(name, width)) or name


def figure_note(banner: str | None, finding: str, width: int = 110) -> str:
    """The red lines under a figure (``save_figure``'s banner): ``banner`` (synthetic data), then the figure's
    ``finding`` wrapped at ``width`` characters so it does not widen the figure."""
    return "\n".join(t for t in (banner, wrap_label(finding, width) if finding else "") if t)
