"""Layers that fill slots, classical and quantum, and the registry that names them.

Registered names (slot kind: name):

- ``conv: conv2d`` -- ``nn.Conv2d(C_in, C_out, k)``, the classical convolution;
- ``conv: flipped_quanv3x3`` -- :class:`FlippedQuanv` (:class:`FlippedQuanv3x3` for 3x3), the flipped
  quanvolution, for any kernel size;
- ``dense: linear`` -- ``nn.Linear``;
- ``dense: data_reuploading`` -- :class:`DataReUploadingLinear`, the re-uploading circuit;
- ``dense: dressed_circuit`` -- :class:`DressedCircuit`, Mari et al.'s dressed quantum circuit, and
  ``dense: dressed_twin``, its classical twin (:mod:`qcreep.layers.dressed`);
- ``dense: amplitude_circuit`` -- :class:`AmplitudeCircuit`, amplitude embedding and strongly
  entangling layers (the circuit-centric classifier), and ``dense: amplitude_twin``, its classical
  twin (:mod:`qcreep.layers.amplitude`);
- ``dense: angle_reuploading`` -- :class:`AngleReuploading`, Pérez-Salinas et al.'s data re-uploading of
  the features in groups of three as Rot angles, with CZ rings and ``<Z>`` readout, and
  ``dense: angle_reuploading_twin``, its product-state classical twin (:mod:`qcreep.layers.angle`);
- ``conv: quanvolution`` -- :class:`Quanvolution`, Henderson et al.'s quanvolution (RY encoding of each
  patch, a fixed random circuit, ``<Z_i>``, a trainable 1x1 mixing), and ``conv: trainable_quanvolution``,
  :class:`TrainableQuanvolution`, the same with trainable entangling layers; their classical twins
  ``conv: quanvolution_twin`` and ``conv: trainable_quanvolution_twin`` (:mod:`qcreep.layers.quanvolution`);
- ``conv: conv3x3_twin`` and ``dense: dense_twin`` -- the classical twins of the paper's two quantum
  layers (:mod:`qcreep.layers.twins`).

Each layer is registered next to its class, in its own module; importing this package imports
them all. Quantum layers subclass :class:`QuantumLayer` (:mod:`qcreep.layers.base`), the declared
contract that :func:`qcreep.testing.assert_valid_layer` checks.

Example:
    >>> from qcreep.layers import list_layers, twin_for
    >>> list_layers("dense")
    ['amplitude_circuit', 'amplitude_twin', 'angle_reuploading', 'angle_reuploading_twin', 'data_reuploading',
     'dense_twin', 'dressed_circuit', 'dressed_twin', 'linear']
    >>> twin_for("flipped_quanv3x3", "conv")
    'conv3x3_twin'
    >>> list_layers("conv")
    ['conv2d', 'conv3x3_twin', 'flipped_quanv3x3', 'quanvolution', 'quanvolution_twin', 'trainable_quanvolution',
     'trainable_quanvolution_twin']
"""

from qcreep.layers import classical  # noqa: F401  (registers conv2d and linear)
from qcreep.layers.amplitude import AmplitudeCircuit, AmplitudeTwin  # registers amplitude_circuit and amplitude_twin
from qcreep.layers.angle import AngleReuploading, AngleReuploadingTwin  # registers angle_reuploading and its twin
from qcreep.layers.base import QuantumLayer, is_quantum_layer
from qcreep.layers.dressed import DressedCircuit, DressedTwin  # registers dressed_circuit and dressed_twin
from qcreep.layers.quanv import FlippedQuanv, FlippedQuanv3x3, patch_qubits
from qcreep.layers.quanvolution import (  # registers quanvolution, trainable_quanvolution and their twins
    Quanvolution,
    QuanvolutionTwin,
    TrainableQuanvolution,
    TrainableQuanvolutionTwin,
)
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


def count_parameters(module) -> int:
    """Number of trainable entries (a complex entry counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


from qcreep.layers import twins  # noqa: E402  (registers conv3x3_twin and dense_twin, after the quantum layers)
from qcreep.layers.registry import twin_for  # noqa: E402
from qcreep.layers.twins import Conv3x3Twin, ConvTwin, DenseTwin  # noqa: E402

__all__ = [
    "AmplitudeCircuit", "AmplitudeTwin", "AngleReuploading", "AngleReuploadingTwin", "Conv3x3Twin", "ConvTwin",
    "DataReUploadingLinear", "DenseTwin",
    "DressedCircuit", "DressedTwin", "FlippedQuanv", "FlippedQuanv3x3", "LayerEntry", "QuantumLayer",
    "Quanvolution", "QuanvolutionTwin", "TrainableQuanvolution", "TrainableQuanvolutionTwin",
    "count_parameters", "create_layer", "get_layer_entry", "is_quantum_layer", "layer_entries", "list_layers",
    "min_qubits", "patch_qubits", "register_layer", "twin_for", "twins", "unregister_layer",
]
