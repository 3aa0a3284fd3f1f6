"""Tests of piumr.kernels: Triton depthwise 3x3x3 conv kernels and the X3D fast-path switch.

The kernels are checked on CPU under the Triton interpreter. ``TRITON_INTERPRET=1`` has to be set before triton
is imported, and this pytest process has imported it normally, so all interpreter checks run once in one
subprocess (``interp`` fixture, module scope) that prints its measurements as JSON; the tests below compare
those numbers with their tolerances here, one assertion per quantity. Everything else (module replacement,
state_dict keys, shared Parameters, the CPU fallback) runs in this process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from piumr.kernels import (
    TritonDepthwiseConv3d,
    apply_fast_path,
    bench_depthwise,
    find_depthwise_convs,
    is_x3d_depthwise_conv,
    triton_available,
    triton_interpreted,
)

SRC = Path(__file__).resolve().parents[1] / "src"
TOL = {"float32": 1e-5, "bfloat16": 1e-2}  # relative L2 error vs a float64 F.conv3d reference

# (name, (B, C, T, H, W), stride, dtype, block override, weight-grad split override, channels_last input)
UNIT_CASES: list[tuple[str, tuple[int, int, int, int, int], int, str, Any, Any, bool]] = [
    ("fp32_s1", (2, 3, 5, 7, 9), 1, "float32", None, None, False),
    ("fp32_s2", (2, 3, 5, 7, 9), 2, "float32", None, None, False),
    ("bf16_s1", (2, 3, 5, 7, 9), 1, "bfloat16", None, None, False),
    ("bf16_s2", (2, 3, 5, 7, 9), 2, "bfloat16", None, None, False),
    # several tiles on every axis with partial edge tiles, even H at stride 2, a strided (channels_last_3d)
    # input, and a weight-gradient reduction split over 3 programs per channel
    ("fp32_s2_tiled", (1, 2, 5, 10, 9), 2, "float32", (4, 4, 4), 3, True),
    # T = 1 (both temporal taps are padding), one-frame tiles
    ("fp32_s1_t1", (1, 2, 1, 3, 11), 1, "float32", (1, 2, 8), 2, False),
]

# X3D sub-modules run in Triton mode under the interpreter. The whole model takes minutes there (each of the
# B*C programs of a layer costs ~50 ms interpreted), so one block: blocks[1] = stage 1, a res block with the
# stride-2 conv_b (C = 36) and the projection shortcut. Stride 1 through the module is checked on a small conv.
MODEL_CASES = ["blocks.1"]

_PRELUDE = """
import copy, json, sys, warnings
warnings.filterwarnings("ignore")
import torch
import torch.nn.functional as F
from piumr.kernels import depthwise as dw
from piumr.kernels import TritonDepthwiseConv3d, apply_fast_path

def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))

out = {"interpreted": dw.triton_interpreted()}
"""

_UNIT_SCRIPT = _PRELUDE + textwrap.dedent(
    """
    out["unit"] = {}
    for i, (name, shape, s, dtype_name, block, split, channels_last) in enumerate(json.loads(sys.argv[1])):
        dtype = getattr(torch, dtype_name)
        g = torch.Generator().manual_seed(i)
        c = shape[1]
        x = torch.randn(shape, generator=g).to(dtype)
        if channels_last:
            x = x.to(memory_format=torch.channels_last_3d)
        w = (0.3 * torch.randn(c, 1, 3, 3, 3, generator=g)).to(dtype)
        # float64 reference on the same (dtype-rounded) values, gradients by autograd
        x64 = x.double().requires_grad_(True)
        w64 = w.double().requires_grad_(True)
        y64 = F.conv3d(x64, w64, None, (1, s, s), 1, 1, c)
        gy = torch.randn(y64.shape, generator=g).to(dtype)
        gx64, gw64 = torch.autograd.grad(y64, (x64, w64), gy.double())
        if block is None and split is None:  # the autograd Function, as the module uses it
            xt = x.clone().requires_grad_(True)
            wt = w.clone().requires_grad_(True)
            y = dw.DepthwiseConv3dFunction.apply(xt, wt, s)
            gx, gw = torch.autograd.grad(y, (xt, wt), gy)
        else:  # the three kernels with explicit tiles / reduction split
            block = tuple(block)
            y = dw.depthwise_conv3d(x, w, s, block=block)
            gx = dw.depthwise_conv3d_backward_input(gy, w, (shape[3], shape[4]), s, block=block)
            gw = dw.depthwise_conv3d_backward_weight(x, gy, s, split=split, block=block).to(w.dtype)
        out["unit"][name] = {
            "y": rel(y, y64), "gx": rel(gx, gx64), "gw": rel(gw, gw64),
            "shapes_ok": y.shape == y64.shape and gx.shape == x.shape and gw.shape == w.shape,
            "dtypes": [str(y.dtype), str(gx.dtype), str(gw.dtype)],
        }

    # the nn.Module on CPU tensors (stride 1) against the nn.Conv3d it replaces
    torch.manual_seed(5)
    conv = torch.nn.Conv3d(3, 3, 3, padding=1, groups=3, bias=False)
    mod = TritonDepthwiseConv3d.from_conv(conv)
    x = torch.randn(2, 3, 4, 6, 5)
    xr, xt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yt = conv(xr), mod(xt)
    gy = torch.randn(yr.shape)
    yr.backward(gy)
    gw_ref = conv.weight.grad.clone()
    conv.weight.grad = None
    yt.backward(gy)
    out["module"] = {
        "uses_triton": mod.use_triton(x), "shared": mod.weight is conv.weight,
        "y": rel(yt, yr), "gx": rel(xt.grad, xr.grad), "gw": rel(mod.weight.grad, gw_ref),
    }
    print("RESULT " + json.dumps(out))
    """
)

_MODEL_SCRIPT = _PRELUDE + textwrap.dedent(
    """
    # count kernel launches through the module path
    calls = {"fwd": 0, "bwd_input": 0, "bwd_weight": 0}
    def counting(fn, key):
        def wrapped(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        return wrapped
    dw.depthwise_conv3d = counting(dw.depthwise_conv3d, "fwd")
    dw.depthwise_conv3d_backward_input = counting(dw.depthwise_conv3d_backward_input, "bwd_input")
    dw.depthwise_conv3d_backward_weight = counting(dw.depthwise_conv3d_backward_weight, "bwd_weight")

    from pytorchvideo.models.x3d import create_x3d
    torch.manual_seed(0)
    model = create_x3d(input_clip_length=4, input_crop_size=64, model_num_class=5,
                       head_activation=None, width_factor=1.0, depth_factor=1.0)
    # pytorchvideo zero-inits each block's last BN (norm_c): the residual branch would then contribute
    # nothing to the output or the input gradient. Randomise all BN affines so every path is exercised.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    out["model"] = {}
    for name in json.loads(sys.argv[1]):
        ref = model.get_submodule(name).train()
        fast = copy.deepcopy(ref)
        n = apply_fast_path(fast, "triton")
        first_conv = next(m for m in ref.modules() if isinstance(m, torch.nn.Conv3d))
        x = torch.randn(1, first_conv.in_channels, 4, 16, 16, generator=torch.Generator().manual_seed(7))
        xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        yr = ref(xr)
        for k in calls:
            calls[k] = 0
        yf = fast(xf)
        gy = torch.randn(yr.shape, generator=torch.Generator().manual_seed(8))
        yr.backward(gy)
        yf.backward(gy)
        pr, pf = dict(ref.named_parameters()), dict(fast.named_parameters())
        out["model"][name] = {
            "replaced": n,
            "calls": dict(calls),
            "same_param_names": list(pr) == list(pf),
            "y": rel(yf, yr),
            "gx": rel(xf.grad, xr.grad),
            "gparams": {k: rel(pf[k].grad, pr[k].grad) for k in pr},
        }
    print("RESULT " + json.dumps(out))
    """
)


def _run_interpreter_checks() -> dict[str, Any]:
    """Run the unit and the model script concurrently (2 processes), merge their JSON results."""
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "OMP_NUM_THREADS": "1",  # two interpreter processes share the 2 cores; numpy/torch need no threads here
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p),
    }
    jobs = [(_UNIT_SCRIPT, json.dumps(UNIT_CASES)), (_MODEL_SCRIPT, json.dumps(MODEL_CASES))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, arg],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script, arg in jobs
    ]
    merged: dict[str, Any] = {}
    failures = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            failures.append(f"rc={proc.returncode}\n{stderr[-6000:]}")
            continue
        result = json.loads(lines[-1].removeprefix("RESULT "))
        merged["interpreted"] = merged.get("interpreted", True) and result.pop("interpreted")
        merged.update(result)
    if failures:
        raise AssertionError("interpreter subprocess failed:\n" + "\n".join(failures))
    return merged


@pytest.fixture(scope="module")
def interp() -> dict[str, Any]:
    if not triton_available():
        pytest.skip("triton is not importable")
    return _run_interpreter_checks()


def _x3d() -> nn.Module:
    from pytorchvideo.models.x3d import create_x3d

    torch.manual_seed(0)
    model: nn.Module = create_x3d(
        input_clip_length=4,
        input_crop_size=64,
        model_num_class=5,
        head_activation=None,
        width_factor=1.0,
        depth_factor=1.0,
    )
    return model


# --------------------------------------------------------------------------------------------------------------
# kernels under the Triton interpreter (one subprocess)


def test_interpreter_was_active(interp: dict[str, Any]) -> None:
    assert interp["interpreted"] is True


def test_module_runs_kernels_on_cpu_under_interpreter(interp: dict[str, Any]) -> None:
    r = interp["module"]
    assert r["uses_triton"] and r["shared"]
    for q in ("y", "gx", "gw"):
        assert r[q] <= 1e-5, (q, r[q])


@pytest.mark.parametrize("quantity", ["y", "gx", "gw"])
@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] for c in UNIT_CASES])
def test_kernel_matches_conv3d(interp: dict[str, Any], case: tuple[Any, ...], quantity: str) -> None:
    name, dtype = case[0], case[3]
    err = interp["unit"][name][quantity]
    assert err <= TOL[dtype], f"{name} {quantity}: relative error {err:.3g} > {TOL[dtype]:g}"


@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] for c in UNIT_CASES])
def test_kernel_shapes_and_dtypes(interp: dict[str, Any], case: tuple[Any, ...]) -> None:
    r = interp["unit"][case[0]]
    assert r["shapes_ok"]
    assert r["dtypes"] == [f"torch.{case[3]}"] * 3  # y, grad_x, grad_w keep the input dtype


@pytest.mark.parametrize("name", MODEL_CASES)
def test_x3d_block_triton_matches_reference(interp: dict[str, Any], name: str) -> None:
    r = interp["model"][name]
    n = 1  # each case holds one conv_b
    assert r["replaced"] == n
    # the Triton path really ran: one forward, one grad-input and one grad-weight launch per replaced conv
    assert r["calls"] == {"fwd": n, "bwd_input": n, "bwd_weight": n}
    assert r["same_param_names"]
    assert r["y"] <= 1e-5, r["y"]
    assert r["gx"] <= 1e-5, r["gx"]
    worst = max(r["gparams"].items(), key=lambda kv: kv[1])
    assert worst[1] <= 1e-5, worst
    assert any(k.endswith("conv_b.weight") for k in r["gparams"])


# --------------------------------------------------------------------------------------------------------------
# apply_fast_path and the module (this process, no interpreter needed)

EXPECTED_X3D_DEPTHWISE = 11  # depth_factor 1.0: stages of 1, 2, 5, 3 blocks, one conv_b each


def test_apply_fast_path_replaces_every_conv_b() -> None:
    model = _x3d()
    before_names = find_depthwise_convs(model)
    convs = {n: model.get_submodule(n) for n in before_names}
    keys = list(model.state_dict().keys())
    params = [(n, id(p)) for n, p in model.named_parameters()]

    assert len(before_names) == EXPECTED_X3D_DEPTHWISE
    assert all(n.endswith("branch2.conv_b") for n in before_names)
    assert apply_fast_path(model, "triton") == EXPECTED_X3D_DEPTHWISE

    for n, conv in convs.items():
        new = model.get_submodule(n)
        assert isinstance(new, TritonDepthwiseConv3d)
        assert new.weight is conv.weight  # shared, not copied
        assert new.stride == conv.stride
    assert list(model.state_dict().keys()) == keys
    assert [(n, id(p)) for n, p in model.named_parameters()] == params
    # the stem's depthwise (5, 1, 1) temporal conv is not a 3x3x3 conv_b and stays
    assert type(model.get_submodule("blocks.0.conv.conv_xy")) is nn.Conv3d
    assert find_depthwise_convs(model) == []
    assert apply_fast_path(model, "triton") == 0  # idempotent


def test_strides_of_replaced_layers() -> None:
    model = _x3d()
    apply_fast_path(model, "triton")
    strides = [m.stride[1] for m in model.modules() if isinstance(m, TritonDepthwiseConv3d)]
    assert strides == [2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1]


def test_checkpoint_roundtrip_between_reference_and_fast_models() -> None:
    ref = _x3d()
    fast = _x3d()
    apply_fast_path(fast, "triton")
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01)
    fast.load_state_dict(ref.state_dict(), strict=True)
    for (kr, vr), (kf, vf) in zip(ref.state_dict().items(), fast.state_dict().items(), strict=True):
        assert kr == kf
        assert torch.equal(vr, vf)
    back = _x3d()
    back.load_state_dict(fast.state_dict(), strict=True)


def test_reference_and_auto_modes_leave_cpu_model_alone() -> None:
    model = _x3d()
    assert apply_fast_path(model, "reference") == 0
    assert apply_fast_path(model, "auto") == 0  # parameters on CPU
    assert not any(isinstance(m, TritonDepthwiseConv3d) for m in model.modules())
    with pytest.raises(ValueError, match="mode"):
        apply_fast_path(model, "fast")  # type: ignore[arg-type]


@pytest.mark.skipif(triton_interpreted(), reason="this process runs the kernels interpreted: too slow here")
def test_cpu_fallback_is_exactly_the_reference() -> None:
    ref = _x3d().train()
    fast = copy.deepcopy(ref)
    assert apply_fast_path(fast, "triton") == EXPECTED_X3D_DEPTHWISE
    x = torch.randn(1, 3, 4, 64, 64)
    xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.manual_seed(3)  # the head's dropout is active in train mode: same mask for both
    yr = ref(xr)
    torch.manual_seed(3)
    yf = fast(xf)
    assert yr.shape == (1, 5)
    assert torch.equal(yr, yf)
    yr.sum().backward()
    yf.sum().backward()
    assert xr.grad is not None and xf.grad is not None
    assert torch.equal(xr.grad, xf.grad)
    for (n, pr), pf in zip(ref.named_parameters(), fast.parameters(), strict=True):
        assert pr.grad is not None and pf.grad is not None, n
        assert torch.equal(pr.grad, pf.grad), n


@pytest.mark.skipif(triton_interpreted(), reason="this process runs the kernels interpreted")
def test_module_fallback_matches_conv3d_on_cpu() -> None:
    torch.manual_seed(1)
    conv = nn.Conv3d(3, 3, 3, stride=(1, 2, 2), padding=1, groups=3, bias=False)
    mod = TritonDepthwiseConv3d.from_conv(conv)
    x = torch.randn(2, 3, 5, 7, 9)
    assert not mod.use_triton(x)
    y = mod(x)
    assert y.shape == (2, 3, 5, 4, 5)
    assert torch.equal(y, conv(x))


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv3d(4, 4, 3, padding=1, groups=1, bias=False),  # not depthwise
        nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=True),  # bias
        nn.Conv3d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),  # temporal stride
        nn.Conv3d(4, 4, 3, stride=(1, 3, 3), padding=1, groups=4, bias=False),  # stride 3
        nn.Conv3d(4, 4, 3, padding=0, groups=4, bias=False),  # no padding
        nn.Conv3d(4, 4, (5, 1, 1), padding=(2, 0, 0), groups=4, bias=False),  # stem conv_xy
        nn.Conv3d(4, 8, 3, padding=1, groups=4, bias=False),  # channel multiplier 2
        nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False, padding_mode="reflect"),
        nn.Conv3d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False),
    ],
)
def test_non_matching_convs_are_not_replaced(conv: nn.Conv3d) -> None:
    assert not is_x3d_depthwise_conv(conv)
    model = nn.Sequential(conv)
    assert apply_fast_path(model, "triton") == 0
    assert model[0] is conv


def test_matching_conv_detected() -> None:
    for s in (1, 2):
        assert is_x3d_depthwise_conv(nn.Conv3d(6, 6, 3, stride=(1, s, s), padding=1, groups=6, bias=False))


def test_module_validation() -> None:
    with pytest.raises(ValueError, match="stride"):
        TritonDepthwiseConv3d(4, stride=3)
    with pytest.raises(ValueError, match="weight"):
        TritonDepthwiseConv3d(4, weight=nn.Parameter(torch.zeros(5, 1, 3, 3, 3)))
    mod = TritonDepthwiseConv3d(4, stride=2)
    assert mod.weight.shape == (4, 1, 3, 3, 3)
    assert mod.stride == (1, 2, 2)
    assert list(mod.state_dict()) == ["weight"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_bench_needs_cuda() -> None:
    with pytest.raises(RuntimeError, match="CUDA"):
        bench_depthwise(batch=1, channels=2, t=2, h=4, w=4, iters=1)


def test_fallback_uses_functional_conv3d(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU without the interpreter the module must call F.conv3d with the conv_b arguments."""
    if triton_interpreted():
        pytest.skip("this process runs the kernels interpreted")
    seen: list[tuple[Any, ...]] = []
    real = F.conv3d

    def spy(*args: Any) -> torch.Tensor:
        seen.append(args[2:])
        out: torch.Tensor = real(*args)
        return out

    monkeypatch.setattr(F, "conv3d", spy)
    mod = TritonDepthwiseConv3d(3, stride=2)
    mod(torch.randn(1, 3, 2, 5, 5))
    assert seen == [(None, (1, 2, 2), 1, 1, 3)]  # bias, stride, padding, dilation, groups
