"""FP8 matmuls in the two sampling networks (opt-in): torchao's dynamic float8 (e4m3) with a scale per row.

Every linear layer of the keyframe and interpolation UNets whose two sizes are multiples of 16 (as FP8
matmuls need; the attention projections, feed-forward layers and embeddings: 52 % of an evaluation's FLOPs
at official size) multiplies FP8 activations, each row scaled by its own largest value, by FP8 weights,
each output row scaled likewise; the convolutions, attention, the VAE, the audio encoders and the sampler
state keep the pipeline's precision. FP8 keeps 3 mantissa bits, so this changes the output by more than
float rounding: its effect is measured (benchmarks/results/speed_presets.md) by ``emulate``, which applies
the same rounding to the same layers and multiplies in the pipeline's dtype, on any device and at no gain
in speed. The real matmuls need an NVIDIA GPU with FP8 tensor cores (compute capability 8.9 or newer).
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import FP8_MODES as MODES
from ..errors import KeySyncError

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
SMALLEST_AMAX = 1e-12  # a row of zeros (the guidance's unconditional context) gets this scale, not 0/0


def fp8_layers(net: nn.Module) -> list[nn.Linear]:
    """The linear layers FP8 applies to: those whose input and output sizes are multiples of 16."""
    return [m for m in net.modules() if isinstance(m, nn.Linear) and m.in_features % 16 == 0 and m.out_features % 16 == 0]


def round_rows_to_fp8(x: torch.Tensor) -> torch.Tensor:
    """``x`` as FP8 with a scale per row (last dimension) makes it, back in ``x``'s dtype: torchao's
    quantisation (scale = the row's largest magnitude / 448, in float32; round to nearest e4m3).
    Written here because torchao runs it only on FP8 GPUs."""
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True).clamp(min=SMALLEST_AMAX) / FP8_MAX
    return ((x32 / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8).float() * scale).to(x.dtype)


def _round_input(module: nn.Module, args: tuple) -> tuple:
    return (round_rows_to_fp8(args[0]), *args[1:])


def emulate_fp8(net: nn.Module) -> int:
    """Give ``net``'s ``fp8_layers`` FP8's rounding (weights now, activations as they come), multiplying
    in their own dtype; returns how many layers changed."""
    layers = fp8_layers(net)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(round_rows_to_fp8(layer.weight))
            layer.register_forward_pre_hook(_round_input)
    return len(layers)


def check_fp8_device(device: torch.device, dtype: torch.dtype) -> None:
    """One line on what stands in the way of real FP8 matmuls here, if anything."""
    if device.type != "cuda":
        raise KeySyncError(f"--fp8 on needs an NVIDIA GPU with FP8 tensor cores (H100, H200, L4, L40, RTX 40xx; --device cuda), not {device}; "
                           "--fp8 emulate shows its effect on the output on any device")
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise KeySyncError(f"--fp8 on needs FP8 tensor cores (CUDA compute capability 8.9 or newer); {torch.cuda.get_device_name(device)} "
                           f"has {capability[0]}.{capability[1]}; --fp8 emulate shows its effect on the output")
    if dtype != torch.bfloat16:
        raise KeySyncError("--fp8 on scales each row of its matmuls in bfloat16: add --dtype bfloat16")


def quantize_fp8(net: nn.Module, device: torch.device, dtype: torch.dtype) -> int:
    """Swap ``net``'s ``fp8_layers`` for torchao's FP8 ones (``net`` on ``device`` in ``dtype``); returns how
    many. Whatever stands in the way is raised before any layer changes. torchao advises torch.compile
    (``--compile``) with it, to fuse the activations' scaling into the layers around them."""
    check_fp8_device(device, dtype)
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as err:
        raise KeySyncError(f"--fp8 on needs torchao ({err}): pip install 'keysync[fp8]'") from None
    chosen = {id(m) for m in fp8_layers(net)}
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), activation_value_lb=SMALLEST_AMAX)
    quantize_(net, config, filter_fn=lambda module, name: id(module) in chosen)
    return len(chosen)
