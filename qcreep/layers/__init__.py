"""Layers that fill slots, classical and quantum, and the registry that names them.

Registered names (slot kind: name):

- ``conv3x3: conv2d`` -- ``nn.Conv2d(C_in, C_out, 3)``, the classical convolution;
- ``conv3x3: flipped_quanv3x3`` -- :class:`FlippedQuanv3x3`, the flipped quanvolution;
- ``dense: linear`` -- ``nn.Linear``;
- ``dense: data_reuploading`` -- :class:`DataReUploadingLinear`, the re-uploading circuit.
"""

from qcreep.layers import classical  # noqa: F401  (registers conv2d and linear)
from qcreep.layers.quanv import FlippedQuanv3x3
from qcreep.layers.registry import (
    LayerEntry,
    create_layer,
    get_layer_entry,
    layer_entries,
    list_layers,
    register_layer,
    unregister_layer,
)
from qcreep.layers.reupload import DataReUploadingLinear, min_qubits


@register_layer("flipped_quanv3x3", slot_kind="conv3x3", quantum=True,
                description="FlippedQuanv3x3: 2-qubit SU(4) state per channel pair, patch as observable")
def make_flipped_quanv3x3(slot, *, angles="real", path="fast", solver="auto", dtype=None, device=None):
    return FlippedQuanv3x3(slot.in_channels, slot.out_channels, slot.stride, slot.padding,
                           angles=angles, path=path, solver=solver, dtype=dtype, device=device)


@register_layer("data_reuploading", slot_kind="dense", quantum=True,
                description="DataReUploadingLinear: Hamiltonian embedding re-uploaded between SU(2^n) gates")
def make_data_reuploading(slot, *, n_qubits=None, n_reps=10, angles="real", output_scale="none",
                          bias_init="normal", path="fast", solver="auto", dtype=None, device=None):
    return DataReUploadingLinear(slot.in_features, slot.out_features, n_qubits=n_qubits, n_reps=n_reps,
                                 angles=angles, output_scale=output_scale, bias_init=bias_init, path=path,
                                 solver=solver, dtype=dtype, device=device)


def count_parameters(module) -> int:
    """Number of trainable entries (a complex entry counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


from qcreep.layers import twins  # noqa: E402  (registers conv3x3_twin and dense_twin, after the quantum layers)
from qcreep.layers.registry import twin_for  # noqa: E402
from qcreep.layers.twins import Conv3x3Twin, DenseTwin  # noqa: E402

__all__ = [
    "Conv3x3Twin", "DataReUploadingLinear", "DenseTwin", "FlippedQuanv3x3", "LayerEntry", "count_parameters",
    "create_layer", "get_layer_entry", "layer_entries", "list_layers", "min_qubits", "register_layer", "twin_for",
    "twins", "unregister_layer",
]
