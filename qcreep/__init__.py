"""qcreep: let the quantum creep in.

Swap the classical layers of a PyTorch network for simulated quantum layers that take and give the
same type of data, one at a time, and measure what each swap changes (Wang, Myers, Hollenberg,
Parampalli, arXiv:2409.17583).

Import order follows the architecture: ``qcreep.sim`` (simulation kernel) -> ``qcreep.layers`` ->
``qcreep.models`` -> ``qcreep.train`` / ``qcreep.sweep`` -> ``qcreep.report`` -> ``qcreep.cli``.
"""

__version__ = "0.1.0"
