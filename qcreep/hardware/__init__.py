"""From simulation to hardware: circuit export, finite shots, noise and resource estimates.

qcreep's layers are simulated exactly. This package answers what a trained rung would take on a
device: :mod:`qcreep.hardware.export` writes a quantum layer's circuit for one input as a Qiskit
circuit, a PennyLane QNode or OpenQASM 3 text; :mod:`qcreep.hardware.execution` evaluates a model
with finite shots and local depolarising noise; :mod:`qcreep.hardware.resources` counts qubits,
circuit executions, two-qubit gates, depth and shots per image.

Qiskit, Qiskit Aer, openqasm3 and PennyLane are optional (``pip install "qcreep[hardware]"``);
the shot and noise simulation needs only torch.
"""
