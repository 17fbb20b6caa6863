"""Model specs: which network a run fills, named by a string that records keep and workers import.

A spec is ``hybridnet`` (the paper's network, :class:`qcreep.models.HybridNet`) or an import
string in uvicorn's style:

* ``package.module:attr`` imports ``package.module`` and takes ``attr`` (dots reach inside it:
  ``pkg.mod:Outer.make``). As in uvicorn, the working folder is on the import path, so
  ``mymodels:Net`` finds ``./mymodels.py`` from the ``qcreep`` command too;
* ``path/to/file.py:attr`` loads the file as a module (relative paths from the working folder).

``attr`` is an ``nn.Module`` class or a factory that returns an ``nn.Module``. It is called with
the keyword arguments it names among ``input_shape`` (per example, e.g. ``(1, 12, 12)`` or
``(30,)``) and ``num_classes``; a factory taking ``**kwargs`` gets both. It is called after
``torch.manual_seed(seed)``, so the same seed gives the same initial weights.

Each failure is one :class:`~qcreep.errors.ConfigError` line: a malformed spec, a module or file
that is not found, a module that raises on import, an attribute that is not found, something that
is neither a module class nor a callable (an ``nn.Module`` *instance* included: a run needs fresh
weights for every seed), a factory that raises (with its message) or returns something that is not
an ``nn.Module``.

A model's identity is its spec and :func:`structure_hash`, a hash of its module tree (names, types,
parameter shapes), so runs of two different networks never share a file, even under one spec.

Example:
    >>> import torch
    >>> model = make_model("hybridnet", (1, 12, 12), 10, seed=0)
    >>> type(model).__name__, structure_hash(model) == structure_hash(make_model("hybridnet", (1, 12, 12), 10))
    ('HybridNet', True)
    >>> make_model("no_such_module_xyz:Net", (4,), 2)
    Traceback (most recent call last):
    ...
    qcreep.errors.ConfigError: model spec 'no_such_module_xyz:Net': no module named 'no_such_module_xyz'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

from qcreep.errors import ConfigError
from qcreep.published import END_TO_END_MODELS as _END_TO_END

BUILTIN_MODELS = ("hybridnet", "hamembedding")
DEFAULT_MODEL = "hybridnet"
#: Built-in models that are one quantum network end to end (nothing to swap): baselines for a ladder.
END_TO_END_MODELS = _END_TO_END


def is_builtin_model(spec: str) -> bool:
    return spec in BUILTIN_MODELS


def check_spec(spec) -> str:
    """``spec`` if it is well formed (``hybridnet``, ``module:attr`` or ``file.py:attr``); else one error."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a model spec is 'hybridnet', 'package.module:attr' or 'path/file.py:attr', got {spec!r}")
    spec = spec.strip()
    if is_builtin_model(spec):
        return spec
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ConfigError(f"model spec '{spec}' is not 'package.module:attr' or 'path/file.py:attr' "
                          f"(built-in models: {', '.join(BUILTIN_MODELS)})")
    return spec


def _is_file(module: str) -> bool:
    return module.endswith(".py") or "/" in module or "\\" in module


def absolute_spec(spec: str) -> str:
    """``spec`` with a file path made absolute (records keep it so, and find the file from any folder)."""
    module, sep, attr = spec.rpartition(":")
    if sep and _is_file(module) and Path(module).expanduser().is_file():
        return f"{Path(module).expanduser().absolute()}:{attr}"
    return spec


def _module_of(spec: str, module: str):
    if _is_file(module):
        path = Path(module).expanduser()
        if not path.is_file():
            raise ConfigError(f"model spec '{spec}': file {path} not found")
        name = "qcreep_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"model spec '{spec}': {path} cannot be loaded as a Python module")
        loaded = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = loaded
        try:
            loader_spec.loader.exec_module(loaded)
        except Exception as err:  # the user's module, whatever it raises
            del sys.modules[name]
            raise ConfigError(f"model spec '{spec}': importing {path} raised {type(err).__name__}: "
                              f"{' '.join(str(err).split())}") from None
        return loaded
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:  # uvicorn's --app-dir ".": find ./module.py
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            raise ConfigError(f"model spec '{spec}': no module named '{err.name}'") from None
        raise ConfigError(f"model spec '{spec}': importing {module} raised ModuleNotFoundError: {err}") from None
    except Exception as err:  # the user's module, whatever it raises
        raise ConfigError(f"model spec '{spec}': importing {module} raised {type(err).__name__}: "
                          f"{' '.join(str(err).split())}") from None


def resolve(spec: str):
    """The class or factory a spec names (imported here)."""
    spec = check_spec(spec)
    if spec == "hybridnet":
        from qcreep.models import HybridNet  # noqa: PLC0415

        return HybridNet
    if spec == "hamembedding":
        from qcreep.endtoend import hamembedding  # noqa: PLC0415

        return hamembedding
    module, _, attr = spec.rpartition(":")
    target = _module_of(spec, module)
    owner = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = sorted(n for n in dir(target) if not n.startswith("_"))[:12]
            raise ConfigError(f"model spec '{spec}': '{owner}' has no attribute '{part}' "
                              f"(it has: {', '.join(names) or 'nothing public'})") from None
        owner = part
    if isinstance(target, nn.Module):
        raise ConfigError(f"model spec '{spec}': '{attr}' is an nn.Module instance ({type(target).__name__}); "
                          "give its class or a factory, so that every seed gets fresh weights")
    if not callable(target):
        raise ConfigError(f"model spec '{spec}': '{attr}' is of type {type(target).__name__}, not an nn.Module "
                          "class or a factory")
    return target


def _arguments(target, input_shape, num_classes) -> dict:
    offered = {"input_shape": tuple(input_shape), "num_classes": int(num_classes)}
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return offered
    names = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                   inspect.Parameter.KEYWORD_ONLY)}
    return {k: v for k, v in offered.items() if k in names}


def make_model(spec: str, input_shape, num_classes: int, *, seed: int | None = None) -> nn.Module:
    """A fresh model of ``spec`` for ``input_shape`` and ``num_classes``; seeded when ``seed`` is given."""
    target = resolve(spec)
    kwargs = _arguments(target, input_shape, num_classes)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = target(**kwargs)
    except ConfigError:
        raise
    except Exception as err:  # the user's factory, whatever it raises
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise ConfigError(f"model spec '{spec}': calling it with {given} raised {type(err).__name__}: "
                          f"{' '.join(str(err).split())}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model spec '{spec}' returned an object of type {type(model).__name__}, not an "
                          "nn.Module")
    return model


def structure_hash(model: nn.Module) -> str:
    """12 hex digits of the module tree: each module's name and type, each parameter's and buffer's shape."""
    sha = hashlib.sha1()
    for name, module in model.named_modules():
        sha.update(f"{name}:{type(module).__module__}.{type(module).__qualname__};".encode())
    for name, value in [*model.named_parameters(), *model.named_buffers()]:
        sha.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
    return sha.hexdigest()[:12]


def model_label(spec: str) -> str:
    """A short name for tables and file names: ``hybridnet``, or the attribute's name (``SmallCNN``)."""
    if is_builtin_model(spec):
        return spec
    return spec.rpartition(":")[2].split(".")[-1]
