"""From simulation to hardware: circuit export, finite shots, noise and resource estimates.

qcreep's layers are simulated exactly. This package answers what a trained rung would take on a
device: :mod:`qcreep.hardware.export` writes a quantum layer's circuit for one input as a Qiskit
circuit, a PennyLane QNode or OpenQASM 3 text; :mod:`qcreep.hardware.execution` evaluates a model
with finite shots and local depolarising noise (the paper's two layers through
:mod:`qcreep.hardware.shots` and :mod:`qcreep.hardware.noise`, the newer layer families through
:mod:`qcreep.hardware.families`, with the batched exact samplers of :mod:`qcreep.hardware.sampling`);
:mod:`qcreep.hardware.resources` counts qubits, circuit executions, two-qubit gates, depth and shots per image.

Qiskit, Qiskit Aer, openqasm3 and PennyLane are optional (``pip install "qcreep[hardware]"``);
the shot and noise simulation needs only torch.
"""
