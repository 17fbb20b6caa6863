"""The ``Example:`` blocks in the docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "qcreep.checks", "qcreep.config", "qcreep.data", "qcreep.files", "qcreep.guard", "qcreep.layers",
    "qcreep.layers.registry", "qcreep.layers.reupload", "qcreep.layers.quanv", "qcreep.layers.twins",
    "qcreep.models", "qcreep.records", "qcreep.sim.paulis", "qcreep.sim.solvers", "qcreep.slots",
    "qcreep.stats", "qcreep.sweep", "qcreep.tuning",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
