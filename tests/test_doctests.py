"""The ``Example:`` blocks in the docstrings run and give what they show.

Every module of the package is collected; the modules listed in ``WITHOUT_EXAMPLES`` (the command
line, whose usage is its help text, and a few modules of constants or private helpers) are the
only ones allowed to have none.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import qcreep

MODULES = sorted(m.name for m in pkgutil.walk_packages(qcreep.__path__, "qcreep.") if not m.name.endswith("__main__"))
WITHOUT_EXAMPLES = {
    "qcreep.cli", "qcreep.cli.common", "qcreep.cli.describe", "qcreep.cli.diagnose", "qcreep.cli.hardware",
    "qcreep.cli.report", "qcreep.cli.run", "qcreep.errors", "qcreep.hardware", "qcreep.layers._angles",
    "qcreep.layers.classical", "qcreep.published", "qcreep.sim",
}


def test_every_listed_exception_is_a_module():
    assert WITHOUT_EXAMPLES <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    examples = sum(len(test.examples) for test in doctest.DocTestFinder().find(module))
    if name not in WITHOUT_EXAMPLES:  # an example marked +SKIP (it needs data or a cluster) still counts
        assert examples > 0, f"{name} has no examples"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
