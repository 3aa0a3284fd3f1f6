"""Frozen, typed configuration for every piumr run.

One pydantic model per concern, all frozen with ``extra="forbid"`` so a misspelt
keyword fails loudly instead of silently doing nothing. Every default that comes
from the paper names its section (``§4.1``); every default the paper leaves open
is marked ``# not in paper`` and listed in ``docs/method_fidelity.md``.

``PRESETS`` holds complete configs by name: ``paper`` (the published recipe) and
small CPU presets (``smoke``, ``tiny``) for demos and tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from piumr.backbones import BACKBONES as BACKBONES  # re-exported: the registry's names and views
from piumr.backbones import NATIVE_INPUT as NATIVE_INPUT
from piumr.backbones import TFAM_STAGES, backbone_spec, check_backbone
from piumr.backbones import default_tfam_stage as default_tfam_stage

#: a registered backbone name (``piumr.backbones.REGISTRY``); an unknown one is a one-line error listing them
Backbone = Annotated[str, AfterValidator(check_backbone)]


#: the person-shift suite's factors and arms (``piumr reproduce shift-suite``; data/synth/shift.py, shift/train.py)
SHIFT_FACTORS: tuple[str, ...] = ("tempo", "size", "appearance", "style", "mixed")
#: the suite's arms (their definitions: ``piumr.shift.arms.ARM_SPECS``): PIUmr's ablation, the positive control, the
#: A/A control, and the domain-generalisation baselines over persons
SHIFT_ARMS: tuple[str, ...] = ("baseline", "tfam", "girl", "piumr", "control", "aa", "groupdro", "vrex", "coral",
                               "mixstyle", "augment")
#: the person-shift suite's training recipe (``piumr reproduce shift-suite``; ``piumr.shift.train.suite_config``
#: puts it on the ``smoke`` preset): epochs, batch, lr (one drop x0.1 at 3/4 of the epochs), TFAM after this stage
#: with this DCT kernel, GIRL's groups, and the paired seeds
SHIFT_SUITE: dict[str, int | float] = {"epochs": 8, "batch": 16, "lr": 2e-3, "tfam_stage": 1, "dct_kernel": 5,
                                       "girl_groups": 2, "seeds": 10}
Split = Literal["official", "cross-subject"]
SYNTH = "synth"  # the data root that stands for the generated synthetic dataset (``piumr.data.synth``)
#: the classes per body part of each synthetic task that has a fixed set (``data/synth/tasks.py``'s ``per_body``)
SYNTH_TASK_CLASSES: dict[int, tuple[str, ...]] = {2: ("once", "twice", "stay")}
PERSON_DISJOINT: Split = "cross-subject"  # the split whose train and test persons differ (folds, seen holdout)
ListSplit = Literal["train", "val", "test"]  # the three official MA-52 lists
OnError = Literal["raise", "skip"]
Fusion = Literal["consistency", "mean"]
Grouping = Literal["random", "person"]  # GIRL's groups: random pseudo-groups (paper) or one per participant
Pairs = Literal["batch", "group"]  # GIRL's pairs j, k: over the whole batch, or inside the anchor's group (eq. 6)


# Bounds of the numeric options (config fields and the CLI options that are not config fields).
# Upper bounds reject values that cannot be meant (they would exhaust memory or disk), not
# unusual-but-valid choices.
MAX_DCT_KERNEL = 64  # TFAM's DCT filters are at most 64 x 64 (the default is 7 x 7)
MAX_SINKHORN_ITERS = 1000  # Sinkhorn-Knopp converges in tens of iterations; a checkpoint asking for 1e9 would hang
MAX_FRAMES = 256  # frames per clip the model sees (paper: 16)
MAX_CROP = 1024  # pixels (paper: 224)
MIN_SHORT_SIDE, MAX_SHORT_SIDE = 16, 4096  # decode / cache short side in pixels
MAX_WORKERS = 256  # loader / conversion processes
MAX_VIEWS = 64  # temporal evaluation views per clip
MAX_SEED = 2**32 - 1
# not in paper, and not part of a run's config (it changes no result): minutes between the mid-epoch
# checkpoints of a training run (a kill loses at most that much work; 0 = at epoch ends only)
CHECKPOINT_EVERY_MIN = 5.0
MAX_CHECKPOINT_EVERY_MIN = 7 * 24 * 60.0


class ConfigFieldError(ValueError):
    """A check across several fields that blames one of them (``field``, dotted below the
    model that raised it), so the CLI can name the option the user typed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TFAMConfig(_Frozen):
    """Temporal-Frequency Alignment Module (§3.1, eq. 1-5)."""

    enabled: bool = True  # §3 (Table 2 setting a/c switch it off)
    frequency: bool = True  # Table 3 "Fre." column
    temporal: bool = True  # Table 3 "Tim." column
    fusion: Fusion = "consistency"  # Table 3 "Fus." column: consistency (eq. 5) or naive mean
    stage: int = Field(4, ge=1, le=4)  # not in paper: after X3D res-stage 4 (the last), before the head
    num_dct: int = Field(16, ge=1)  # not in paper: D, lowest-frequency DCT-II bases (zig-zag order)
    # not in paper: k x k DCT filters (7x7 as in HDF_DFER); bounded: no stored weight shows k, and a checkpoint's
    # config must not decide an unbounded allocation (the k x k bases)
    dct_kernel: int = Field(7, ge=1, le=MAX_DCT_KERNEL)
    beta: float = 0.1  # not in paper: eq. (1)-(2) variance-modulation weight
    alpha: float = 0.1  # not in paper: eq. (1)-(2) perturbation weight
    eps_low: float = 1e-4  # not in paper: clamp lower bound for Var_hw(E_d)
    eps_high: float = 1.0  # not in paper: clamp upper bound for Var_hw(E_d)
    dyt_init: float = 0.5  # not in paper: DyT slope a init (0.5 as in HDF_DFER / Zhu et al. 2025)
    attn_kernel: int = Field(3, ge=1)  # not in paper: Conv2D(D->1) kernel of A_s
    tau_min: float = 0.05  # not in paper: eq. (3)
    tau_scale: float = 1.0  # not in paper: eq. (3)
    sinkhorn_iters: int = Field(5, ge=0, le=MAX_SINKHORN_ITERS)  # not in paper: Sinkhorn-Knopp iterations
    gamma_w: float = 0.1  # not in paper: Wasserstein-style deviation penalty weight
    attn_dim: int = Field(64, ge=1)  # not in paper: width of the Linear + self-attention block
    attn_heads: int = Field(4, ge=1)  # not in paper
    # not in paper: A_t = sigmoid(Gamma * (T * K_mix - 1) + beta); "none" = sigmoid(Gamma * K_mix + beta), flat at init
    kernel_scale: Literal["frames", "none"] = "frames"
    gate_scale_init: float = 4.0  # not in paper: initial Gamma (learnable)
    # not in paper: A_t transports the T-centred frame descriptors; "mean" = A_t @ descriptors / T;
    # "rows" = the literal SelfAttn(Linear(A_t)), A_t's rows as tokens
    tokens: Literal["centred", "mean", "rows"] = "centred"
    # §3.1.3 "masking or shuffling": masking by default (with a max over (T, H, W), shuffling gives s_t == 1)
    temporal_perturb: Literal["shuffle", "mask"] = "mask"
    mask_ratio: float = Field(0.25, ge=0.0, lt=1.0)  # not in paper: frames zeroed by "mask" (at least one)
    # not in paper: s_t compares per-frame maxima (order-aware); "global" = one max over (T, H, W) (literal)
    stability_pool: Literal["frame", "global"] = "frame"
    # not in paper: s_t, s_s compare each branch's modulation phi(x) - x on what the perturbation left (kept
    # frames); "all" = the branch outputs over all frames and the bare spectrum (measures the mask ratio)
    stability_on: Literal["kept", "all"] = "kept"
    # not in paper: lambda per clip, same rule in eval; "batch" = batch mean, frozen EMA in eval (first reading)
    fusion_lambda: Literal["sample", "batch"] = "sample"
    fusion_momentum: float = Field(0.1, gt=0.0, le=1.0)  # not in paper: EMA of lambda for fusion_lambda="batch"
    fusion_grad: bool = False  # not in paper: lambda_t, lambda_s are detached weights by default
    fusion_cos: Literal["shifted", "clamped"] = "shifted"  # not in paper: map cos in [-1,1] to [0,1]


class MixStyleConfig(_Frozen):
    """MixStyle (Zhou et al., ICLR 2021, eq. 4-5; a baseline of the person-shift suite, not part of PIUmr): in
    training only, with probability ``p`` per batch, each clip's per-channel feature mean and std over (T, H, W)
    after the listed backbone stages are mixed with those of another clip of the batch, weight ~ Beta(alpha, alpha)."""

    enabled: bool = False
    p: float = Field(0.5, ge=0.0, le=1.0)  # Dassl's default
    alpha: float = Field(0.1, gt=0.0)  # Dassl's default
    stages: tuple[int, ...] = (1, 2)  # after these backbone stages (the paper: after res1-res3 of a ResNet)
    # "random": a random permutation of the batch; "crossdomain": the batch's halves swapped (Dassl's two modes)
    mix: Literal["random", "crossdomain"] = "random"

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, stages: tuple[int, ...]) -> tuple[int, ...]:
        bad = [s for s in stages if not 1 <= s <= 4]
        if bad:
            raise ValueError(f"MixStyle stages must be backbone stages 1..4, got {bad[0]}")
        return stages


class GIRLConfig(_Frozen):
    """Group-Invariant Regularized Loss (§3.2, eq. 6-7).

    The paper gives none of G, tau, eta, lambda_var, nor the unit of eta; the defaults
    below were chosen from measurements (docs/method_fidelity.md, "GIRL"). The literal
    reading is ``weight_on="scaled", tau=0.07, eta=0.2`` (the related code's values) with
    ``pairs="group"`` (j, k inside the group, eq. 6 as written).
    """

    enabled: bool = True  # §4.1 "sum of cross-entropy loss and GIRL"
    weight: float = 1.0  # §4.1: plain sum CE + GIRL
    groups: int = Field(4, ge=1)  # not in paper: G pseudo-groups
    tau: float = Field(0.07, gt=0.0)  # not in paper: similarity temperature (HDF_DFER uses 0.07)
    eta: float = Field(0.5, gt=0.0)  # not in paper: Gaussian centre/width, in the units of weight_on
    lambda_var: float = Field(1.0, ge=0.0)  # not in paper: weight of R_var
    var_grad: bool = False  # paper: r_g = stopgrad(L_g) -> R_var carries no gradient
    exclude_self: bool = False  # paper sums j over the whole group, self-pair included
    # not in paper (unit of eta): Gaussian on the cosine; "scaled" = on s_ij = cos / tau as written;
    # "shifted" = on s_ij - max_k s_ik (HDF_DFER)
    weight_on: Literal["cosine", "scaled", "shifted"] = "cosine"
    eps: float = 1e-8  # eq. (6) epsilon
    detach_weights: bool = False  # paper: w_ij is a function of s_ij (gradient flows); True = DRO-style constants
    seed: int = 0  # not in paper: seed of the pseudo-group permutation stream
    # beyond the paper: "random" pseudo-groups (paper); "person" = one group per participant in the batch
    # (group DRO over persons; training then draws batches with >= G participants)
    grouping: Grouping = "random"
    # not in paper (deviation, measured): j, k of eq. (6) run over the whole batch, the group picks the anchors
    # whose risk is L_g; "group" = inside the group as written (at batch 12, G = 4 most anchors have no partner)
    pairs: Pairs = "batch"


class ModelConfig(_Frozen):
    """Video backbone (X3D or torchvision's) + TFAM + linear head."""

    backbone: Backbone = "x3d_m"  # §3: X3D; -M assumed (16x224 input, §4.1)
    num_classes: int = Field(52, ge=2)  # MA-52 action classes
    frames: int = Field(16, ge=1, le=MAX_FRAMES)  # §4.1: 16 frames
    crop: int = Field(224, ge=32, le=MAX_CROP)  # §4.1: 224x224
    dropout: float = Field(0.5, ge=0.0, lt=1.0)  # pytorchvideo X3D default, not in paper (also MViT's head dropout)
    # not in paper: path to a local Kinetics checkpoint (.pyth X3D / torchvision .pth / VideoMAE folder or file)
    pretrained: str | None = None
    # not in paper: pytorchvideo starts every residual branch at zero (last BatchNorm scale 0); False starts
    # them at 1, which shortened the chance-level plateau of the small from-scratch CPU models (method fidelity)
    zero_init_residual: bool = True
    # not in paper: how X3D's stem starts when trained from scratch (piumr.model.early_init; a --pretrained
    # checkpoint overwrites it): "zero_mean_t" removes the mean of each random temporal tap set, so every stem
    # channel starts as a change detector; pytorchvideo's "default" left the seeds whose taps mostly average over
    # time at chance (issue "every training learns", docs/results.md)
    early_init: Literal["default", "ortho_stem", "dirac_t", "ortho_dirac", "zero_mean_t"] = "zero_mean_t"
    tfam: TFAMConfig = TFAMConfig()
    mixstyle: MixStyleConfig = MixStyleConfig()  # a baseline of the person-shift suite (off: PIUmr has none)

    @model_validator(mode="after")
    def _check_stage(self) -> ModelConfig:
        allowed = TFAM_STAGES[self.backbone]
        if self.tfam.enabled and self.tfam.stage not in allowed:
            raise ValueError(f"model.tfam.stage={self.tfam.stage} is not allowed for {self.backbone}; "
                             f"choose one of {list(allowed)}")
        return self


class DataConfig(_Frozen):
    """Where clips come from and how they are sampled."""

    root: str = SYNTH  # SYNTH = generated dataset; else an MA-52 root, a prepared cache or a manifest .csv
    split: Split = "official"
    fold: int = Field(0, ge=0)  # cross-subject fold index, < folds
    folds: int = Field(5, ge=2)  # not in paper: k for cross-subject folds
    fold_seed: int = 0  # not in paper: seed of the person -> fold assignment
    short_side: int = Field(256, ge=MIN_SHORT_SIDE, le=MAX_SHORT_SIDE)  # not in paper: resize before the random crop
    hflip: bool = True  # not in paper
    crop_min_scale: float = Field(0.25, gt=0.0, le=1.0)  # not in paper: RandomResizedCrop area scale (min, 1)
    # decord by default (falls back to PyAV); the small CPU presets use PyAV directly because
    # decord 0.6 fails on small output widths (e.g. 48, 72) and PyAV is as fast on small clips
    backend: Literal["decord", "pyav", "auto"] = "auto"
    on_error: OnError = "skip"
    num_workers: int = Field(2, ge=0, le=MAX_WORKERS)
    # not in paper: decode every clip once and keep its frames in RAM ("auto": when the dataset fits the
    # budget of piumr.data.memory and no prepared cache exists; the synthetic CPU datasets always do)
    memory_cache: Literal["auto", "on", "off"] = "auto"
    # not in paper: with split="cross-subject", every k-th clip of each training person (by file name) is
    # held out of training as the seen-persons evaluation set "val_seen"; 0 = no such set
    seen_holdout: int = Field(4, ge=0)
    # not in paper: "domain=NAME" trains on a manifest's other domains and validates on NAME
    hold_out: str | None = Field(None, pattern=r"^domain=.+$")
    synth_persons: int = Field(24, ge=2, le=1000)  # synthetic dataset size (not in paper)
    synth_clips_per_person: int = Field(40, ge=1, le=1000)
    synth_classes_per_body: int = Field(2, ge=1, le=13)
    synth_frames: int = Field(32, ge=4, le=1024)
    synth_size: int = Field(112, ge=32, le=1024)
    synth_seed: int = Field(0, ge=0, le=MAX_SEED)
    # not in paper: 1 = task v1 (data/synth/actions.py), 2 = task v2 (data/synth/temporal.py: once / twice / stay per
    # body part, classes that differ only in time; synth_classes_per_body <= 3)
    synth_task: int = Field(1, ge=1, le=2)

    @model_validator(mode="after")
    def _check_fold(self) -> DataConfig:
        fixed = SYNTH_TASK_CLASSES.get(self.synth_task, ())
        if fixed and self.synth_classes_per_body > len(fixed):
            raise ConfigFieldError("synth_classes_per_body", f"task {self.synth_task} has {len(fixed)} classes per "
                                   f"body part ({', '.join(fixed)}): classes per body {self.synth_classes_per_body} "
                                   f"must be 1..{len(fixed)}")
        if self.fold >= self.folds:
            raise ConfigFieldError("fold", f"fold {self.fold} is out of range: {self.folds} folds are numbered "
                                           f"0..{self.folds - 1}")
        if self.hold_out is not None and self.split != "official":
            raise ConfigFieldError("hold_out", f"hold-out {self.hold_out} replaces the split: it cannot be "
                                               f"combined with split {self.split!r}")
        return self


class OptimConfig(_Frozen):
    """Optimiser and schedule (§4.1)."""

    lr: float = Field(1e-3, gt=0.0, le=10.0)  # §4.1
    weight_decay: float = Field(1e-4, ge=0.0, le=10.0)  # §4.1
    batch_size: int = Field(80, ge=1, le=65536)  # §4.1
    epochs: int = Field(120, ge=1, le=100000)  # §4.1
    milestones: tuple[int, ...] = (30, 60)  # §4.1: lr x0.1 at epochs 30 and 60
    gamma: float = Field(0.1, gt=0.0, le=1.0)  # §4.1
    amp: bool = True  # §4.1 "mixed precision" (bf16 autocast on GPU; fp32 on CPU)
    grad_clip: float | None = Field(None, gt=0.0)  # not in paper: max gradient norm (None = no clipping)
    warmup_epochs: int = Field(0, ge=0)  # not in paper
    warmup_steps: int = Field(0, ge=0)  # not in paper: linear learning-rate warm-up over the first steps


Depthwise = Literal["auto", "conv3d", "aten", "triton", "numba", "autograd"]
Pointwise = Literal["auto", "conv3d", "matmul"]


class SpeedConfig(_Frozen):
    """How a training step runs on the device; none of these changes a result beyond rounding (each is tested
    against the lever off, docs/benchmarks.md "Training-path levers"). Not in paper. "auto" resolves per device
    (``piumr.speed.resolve_speed``): on the CPU to the levers measured faster there (the numba depthwise conv, 1x1x1
    convs as matmuls; docs/benchmarks.md "CPU training path"); on a GPU to the lever off,
    as is every other default: none has yet been measured to help on a GPU (the defaults await that measurement)."""

    cudnn_benchmark: bool = False  # CUDA: let cuDNN time its algorithms for each shape once
    # model and clips in channels_last_3d ("auto": off; DESIGN §5: slower for X3D-M on one H100; on the CPU torch's
    # channels-last batch norm is less accurate: gradients 1.9e-3 from float64 against 2.5e-6, docs/benchmarks.md)
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False  # torch.compile the network (DESIGN §5: no gain alone, ~100 s warm-up)
    # AdamW(fused=True): one kernel per parameter ("auto": on the CPU, 0.5 against 2.8 ms per step of the demo model;
    # off on a GPU until measured there)
    fused_adamw: bool | Literal["auto"] = "auto"
    uint8_clips: bool = False  # loader yields uint8 clips, normalised on the device (a quarter of the bytes)
    prefetch: bool = False  # persistent loader workers across epochs; CUDA: next batch copied on a side stream
    prefetch_factor: int = Field(4, ge=1, le=64)  # batches each worker keeps ready (with ``prefetch``)
    check_every: int = Field(1, ge=1, le=100000)  # steps between host syncs (finite check, loss values)
    # depthwise convs: torch's conv3d (cuDNN), ATen's kernel or Triton (X3D's 3x3x3, CUDA); numba or autograd (any
    # depthwise Conv3d on the CPU, a backward as cheap as the forward; autograd = the same in PyTorch ops, for
    # machines without numba); "auto": numba on the CPU (autograd where numba cannot be imported), else conv3d
    depthwise: Depthwise = "auto"
    pointwise: Pointwise = "auto"  # 1x1x1 convs: conv3d, or matmul over channels ("auto": matmul on the CPU only)
    depthwise_tiles: str | None = None  # JSON of Triton tiles per shape (bench/gpu_lease.sh writes one)


class TrainConfig(_Frozen):
    """A complete, reproducible run."""

    name: str = "paper"
    seed: int = Field(0, ge=0, le=MAX_SEED)  # not in paper
    model: ModelConfig = ModelConfig()
    girl: GIRLConfig = GIRLConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    speed: SpeedConfig = SpeedConfig()
    ce_weight: float = Field(1.0, ge=0.0)  # §4.1: plain sum
    loss: str = Field("piumr", min_length=1)  # the training criterion: a name in piumr.losses.LOSSES
    # the named loss's own options (name -> number), checked by that loss (e.g. {"eta": 0.01} for groupdro)
    loss_options: dict[str, float] = Field(default_factory=dict)
    eval_every: int = Field(1, ge=1)  # epochs between validations (not in paper)
    max_steps_per_epoch: int | None = Field(None, ge=1)  # cap for quick runs (not in paper)
    tensorboard: bool = False  # also write the log's numbers as TensorBoard scalars (<run>/tensorboard; an extra)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if any(m < 0 for m in self.optim.milestones):
            raise ValueError(f"milestones must be >= 0, got {self.optim.milestones}")
        if self.model.crop > self.data.short_side:
            raise ConfigFieldError("model.crop", f"crop {self.model.crop} is larger than the short side "
                                                 f"{self.data.short_side} the clips are resized to")
        g = self.girl
        if g.enabled and g.grouping == "person" and self.optim.batch_size % g.groups:
            raise ConfigFieldError("girl.grouping", f"person groups put {g.groups} participants with equal shares "
                                   f"in every batch: batch size {self.optim.batch_size} is not a multiple of "
                                   f"G = {g.groups}")
        tf = self.model.tfam
        if tf.enabled and not (tf.frequency or tf.temporal):
            raise ValueError("TFAM enabled with neither the frequency nor the temporal branch")
        return self


def _tiny_model(frames: int, crop: int) -> ModelConfig:
    return ModelConfig(
        backbone="x3d_tiny", frames=frames, crop=crop, dropout=0.2, zero_init_residual=False,
        tfam=TFAMConfig(num_dct=8, dct_kernel=3, attn_dim=16, attn_heads=2),
    )


def _wider(cfg: TrainConfig, name: str) -> TrainConfig:
    """``cfg`` with the 6x wider ``x3d_mini`` backbone (X3D-XS widths, 1.07 M parameters)."""
    return TrainConfig.model_validate({**cfg.model_dump(), "name": name,
                                       "model": {**cfg.model.model_dump(), "backbone": "x3d_mini"}})


PRESETS: dict[str, TrainConfig] = {
    # the published recipe (§4.1)
    "paper": TrainConfig(name="paper"),
    # ~250 optimiser steps on synthetic data (7 classes, one per body group) in about 1.5 minutes on
    # one CPU core, learning well above chance; clips decoded once into memory, so no loader workers
    "smoke": TrainConfig(
        name="smoke",
        model=_tiny_model(frames=8, crop=64),
        # G = 2 (the paper preset: 4) keeps the committed runs' keys (GIRL-off runs are keyed on GIRL's fields too).
        # With pairs over the batch, G changes only R_var's value (no gradient) and the order of a sum. The paper's
        # G = 4 on this recipe, paired with CE: -2.7 [-8.5, +3.1] points unseen-person Top-1 over 8 seeds
        # (person-disjoint), -0.7 [-8.4, +6.9] over 6 (official-like): equal to CE within the resolution
        # (docs/method_fidelity.md, "GIRL at the paper's group size")
        girl=GIRLConfig(groups=2),
        data=DataConfig(short_side=72, crop_min_scale=0.8, backend="pyav", num_workers=0, synth_persons=16,
                        synth_clips_per_person=28, synth_classes_per_body=1),
        optim=OptimConfig(lr=2e-3, batch_size=12, epochs=14, milestones=(10,), amp=False),
        eval_every=7,
    ),
    # the demo (piumr reproduce demo): task v2 (21 classes, once / twice / stay per body part, that differ only
    # in time) on the person-disjoint split; 16 frames so that two bumps are two bumps, TFAM after stage 1 (on a
    # 12 x 12 map at 48 pixels, as in the shift suite); sized for the whole demo (8 runs + Fig. 5) to stay
    # under 10 minutes on 2 CPU cores (docs/results.md)
    "demo": TrainConfig(
        name="demo",
        model=_tiny_model(frames=16, crop=48).model_copy(update={"tfam": TFAMConfig(
            num_dct=8, dct_kernel=5, attn_dim=16, attn_heads=2, stage=1)}),
        girl=GIRLConfig(groups=2),
        data=DataConfig(short_side=56, crop_min_scale=0.8, backend="pyav", num_workers=0, synth_persons=24,
                        synth_clips_per_person=42, synth_classes_per_body=3, synth_frames=32, synth_size=64,
                        synth_task=2),
        optim=OptimConfig(lr=2e-3, batch_size=16, epochs=8, milestones=(6,), amp=False),
        eval_every=4,
    ),
    # a few seconds: what the tests use
    "tiny": TrainConfig(
        name="tiny",
        model=_tiny_model(frames=4, crop=32),
        girl=GIRLConfig(groups=2),
        data=DataConfig(short_side=36, backend="pyav", num_workers=0, synth_persons=6, synth_clips_per_person=8,
                        synth_frames=8, synth_size=48),
        optim=OptimConfig(lr=3e-3, batch_size=8, epochs=2, milestones=(1,), amp=False),
    ),
}

# smoke with a wider X3D: ~4-7 min on 2 CPU cores, long enough to fit persons, so seen persons score
# higher than unseen ones (docs/results.md, person shift)
PRESETS["small"] = _wider(PRESETS["smoke"], "small")


def backbone_overrides(backbone: str, *, native_input: bool) -> dict[str, Any]:
    """Dotted overrides that put a config on ``backbone``: TFAM at its default stage and, with
    ``native_input``, the clip length and crop of its own Kinetics weights (its ``BackboneSpec``).

    Raises ``ValueError`` naming the valid backbones for an unknown one.
    """
    spec = backbone_spec(backbone)
    over: dict[str, Any] = {"model.backbone": backbone, "model.tfam.stage": spec.default_tfam_stage}
    if native_input:
        over["model.frames"], over["model.crop"] = spec.native_input
    return over


def get_preset(name: str) -> TrainConfig:
    """Return the preset ``name``; raises ``KeyError`` listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None


def with_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Apply dotted overrides (``{"optim.lr": 0.01, "model.tfam.enabled": False}``).

    Unknown keys raise ``ValueError``; values are validated by pydantic.
    """
    data = cfg.model_dump()
    for dotted, value in overrides.items():
        node: Any = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ValueError(f"unknown config key {dotted!r}")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ValueError(f"unknown config key {dotted!r}")
        node[parts[-1]] = value
    return TrainConfig.model_validate(data)
