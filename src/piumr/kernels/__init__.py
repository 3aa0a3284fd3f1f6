"""Hand-written (Triton) kernels for the X3D training fast path.

- ``depthwise``: forward / backward-input / backward-weight kernels of X3D's depthwise 3x3x3 conv and the autograd
  Function.
- ``bench``: ``bench_depthwise``, reference vs Triton timing of one layer (CUDA only).
- ``fastpath``: the drop-in ``TritonDepthwiseConv3d`` module (falls back to ``F.conv3d`` off-GPU) and
  ``apply_fast_path(model, mode)``, which swaps it into a model, sharing weights.
"""

from piumr.kernels.depthwise import (
    DepthwiseConv3dFunction,
    depthwise_conv3d,
    depthwise_conv3d_backward_input,
    depthwise_conv3d_backward_weight,
    triton_available,
    triton_interpreted,
)
from piumr.kernels.bench import bench_depthwise
from piumr.kernels.fastpath import (
    FastPathMode,
    TritonDepthwiseConv3d,
    apply_fast_path,
    find_depthwise_convs,
    is_x3d_depthwise_conv,
)

__all__ = [
    "DepthwiseConv3dFunction",
    "FastPathMode",
    "TritonDepthwiseConv3d",
    "apply_fast_path",
    "bench_depthwise",
    "depthwise_conv3d",
    "depthwise_conv3d_backward_input",
    "depthwise_conv3d_backward_weight",
    "find_depthwise_convs",
    "is_x3d_depthwise_conv",
    "triton_available",
    "triton_interpreted",
]
