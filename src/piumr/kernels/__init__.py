"""Hand-written (Triton) kernels for the X3D training fast path.

- ``depthwise``: forward / backward-input / backward-weight kernels of X3D's depthwise 3x3x3 conv, the autograd
  Function and the tiles per shape (``Tiles``, ``tile_key``).
- ``bench``: ``bench_depthwise``, reference vs Triton timing of one layer (CUDA only).
- ``fastpath``: the drop-in ``TritonDepthwiseConv3d`` module (falls back to ``F.conv3d`` off-GPU);
  ``apply_fast_path(model, mode)`` swaps it into a model, sharing weights;
  ``swap_depthwise(model, impl, tiles)`` picks conv3d, ATen's ``conv_depthwise3d`` or Triton (training path).
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
    AtenDepthwiseConv3d,
    DepthwiseImpl,
    FastPathMode,
    TritonDepthwiseConv3d,
    apply_fast_path,
    find_depthwise_convs,
    is_x3d_depthwise_conv,
    swap_depthwise,
)

__all__ = [
    "AtenDepthwiseConv3d",
    "DepthwiseConv3dFunction",
    "DepthwiseImpl",
    "FastPathMode",
    "TritonDepthwiseConv3d",
    "apply_fast_path",
    "bench_depthwise",
    "depthwise_conv3d",
    "depthwise_conv3d_backward_input",
    "depthwise_conv3d_backward_weight",
    "find_depthwise_convs",
    "is_x3d_depthwise_conv",
    "swap_depthwise",
    "triton_available",
    "triton_interpreted",
]
