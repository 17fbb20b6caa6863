"""qcreep: let the quantum creep in.

Swap the classical layers of a PyTorch network for simulated quantum layers that take and give the
same type of data, one at a time, and measure what each swap changes (Wang, Myers, Hollenberg,
Parampalli, arXiv:2409.17583).

Import order follows the architecture: ``qcreep.sim`` (simulation kernel) -> ``qcreep.layers`` ->
``qcreep.models`` -> ``qcreep.train`` / ``qcreep.sweep`` -> ``qcreep.report`` -> ``qcreep.cli``.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``qcreep.creep(model, example_input)`` without importing torch at ``import qcreep`` (the CLI's
    # --help stays fast): the submodule is imported on first use, and calling it calls creep.creep
    if name == "creep":
        import importlib

        return importlib.import_module("qcreep.creep")
    raise AttributeError(f"module 'qcreep' has no attribute {name!r}")
