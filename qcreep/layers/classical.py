"""Classical candidates: the paper's level-0 layers, ``nn.Conv2d`` and ``nn.Linear``.

They are used unchanged (PyTorch's default initialisation), so a level-0 model is exactly the
published classical network.
"""

from torch import nn

from qcreep.layers.registry import register_layer


@register_layer("conv2d", slot_kind="conv", quantum=False,
                description="nn.Conv2d(C_in, C_out, k): k_h k_w C_in C_out + C_out parameters")
def make_conv2d(slot, *, dtype=None, device=None):
    return nn.Conv2d(slot.in_channels, slot.out_channels, slot.kernel_size, stride=slot.stride,
                     padding=slot.padding, dilation=slot.dilation, dtype=dtype, device=device)


@register_layer("linear", slot_kind="dense", quantum=False,
                description="nn.Linear(F_in, F_out): F_in F_out + F_out parameters")
def make_linear(slot, *, dtype=None, device=None):
    return nn.Linear(slot.in_features, slot.out_features, dtype=dtype, device=device)
