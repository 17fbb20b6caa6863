"""Datasets: a table of specs and a few file readers, no code per dataset.

Every dataset qcreep knows is one :class:`DatasetSpec` row in :data:`DATASETS`. Loading goes through
:func:`load_dataset`, which returns ``(train, test)`` as two :class:`Split` objects holding

* ``x``: float32 tensor of shape ``(N, C, H, W)`` with values in ``[-1, 1]``;
* ``y``: int64 tensor of shape ``(N,)`` with class indices ``0 .. num_classes - 1``.

Preprocessing (as in the paper, arXiv:2409.17583)
-------------------------------------------------
1. Pixels are scaled to float32 in ``[0, 1]`` (``uint8 / 255``; the sklearn digits, whose values are
   ``0 .. 16``, are divided by 16).
2. The ``[0, 1]`` image is zero-padded by ``spec.pad`` pixels on every side (MNIST and FashionMNIST
   28x28 -> 32x32, digits 8x8 -> 12x12, CIFAR-10 stays 32x32). Padding happens *before*
   normalising, so a padded pixel is 0 in ``[0, 1]`` space and becomes -1 after step 3. This is
   exactly what torchvision's ``Pad(2)`` on the PIL image followed by ``ToTensor()`` and
   ``Normalize(0.5, 0.5)`` gives, and the arithmetic is the same, so values are bit-identical.
3. Each channel is normalised as ``(x - mean) / std`` with mean 0.5 and std 0.5, so values lie in
   ``[-1, 1]``.

Where the files are
-------------------
The folder layout is torchvision's, so an existing torchvision data folder works as is:

* MNIST / FashionMNIST: ``<data_dir>/MNIST/raw/`` and ``<data_dir>/FashionMNIST/raw/`` with the four
  IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each either uncompressed or gzipped (``.gz``); the uncompressed file
  is used when both exist.
* CIFAR-10: ``<data_dir>/cifar-10-batches-py/`` with the python pickles ``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch``. They are read with a restricted unpickler that only builds
  numpy arrays, lists, dicts and bytes, so a hostile file cannot run code.
* digits: scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``), no files needed.

``data_dir`` is, in order: the argument, the ``QCREEP_DATA`` environment variable, or the user cache
folder ``$XDG_CACHE_HOME/qcreep/data`` (``~/.cache/qcreep/data`` when ``XDG_CACHE_HOME`` is unset).
When files are missing and ``download=True``, torchvision (if it is installed and imports) fetches
them into ``data_dir``; they are then read with qcreep's own readers. Nothing else is written to
disk: no preprocessed cache is kept.

Fixed splits and subsets
------------------------
* MNIST, FashionMNIST and CIFAR-10 use their official train / test files.
* digits has no official split. qcreep uses ``sklearn.model_selection.train_test_split(X, y,
  test_size=0.25, random_state=0, stratify=y)``, which always gives the same 1347 train and 450
  test images.
* ``max_train`` / ``max_test`` keep the *first* N examples of a split (in file order, or in the
  order of the digits split above). This is deterministic; it is not a random or class-balanced
  sample.
* The validation split (:func:`validation_split`) is carved from the (possibly truncated) training
  split: stratified by class, drawn with a fixed seed (``split_seed``, default 0) that does not
  depend on the run's seed, so every rung and every seed of a ladder sees the same validation
  images. It never overlaps the test split, which is only ever scored, never used to choose.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qcreep.checks import is_int
from qcreep.errors import DataError, QcreepError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Split",
    "dataset_names",
    "describe_datasets",
    "get_spec",
    "load_dataset",
    "read_cifar_batch",
    "read_idx",
    "resolve_data_dir",
    "validation_split",
]

ENV_DATA_DIR = "QCREEP_DATA"

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


# --------------------------------------------------------------------------------------------------
# The spec table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where its files live, how to read them, and how to preprocess the images.

    ``files`` maps a role to the file names that make it up. For the ``idx`` format the roles are
    ``train_images``, ``train_labels``, ``test_images``, ``test_labels`` (one file each); for
    ``cifar-pickle`` they are ``train`` (five batches) and ``test`` (one batch). The files live in
    ``<data_dir>/<folder>/<subdir>/``. ``folder`` is ``None`` for data that needs no files.
    """

    name: str
    folder: str | None
    format: str
    channels: int
    native_size: int
    pad: int
    num_classes: int
    files: dict[str, tuple[str, ...]] = field(hash=False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    subdir: str = ""
    train_size: int | None = None
    test_size: int | None = None
    torchvision_class: str | None = None
    class_names: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        """Height (= width) of an image after padding."""
        return self.native_size + 2 * self.pad

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one preprocessed image, after padding."""
        return (self.channels, self.image_size, self.image_size)

    @property
    def needs_files(self) -> bool:
        return self.folder is not None

    def file_dir(self, data_dir: str | os.PathLike[str]) -> Path:
        """The directory that holds this dataset's files under ``data_dir``."""
        if self.folder is None:
            raise QcreepError(
                f"dataset '{self.name}' is bundled with scikit-learn and has no data folder; "
                "load it with load_dataset() without a data_dir"
            )
        path = Path(data_dir) / self.folder
        return path / self.subdir if self.subdir else path


def _idx_files() -> dict[str, tuple[str, ...]]:
    return {
        "train_images": ("train-images-idx3-ubyte",),
        "train_labels": ("train-labels-idx1-ubyte",),
        "test_images": ("t10k-images-idx3-ubyte",),
        "test_labels": ("t10k-labels-idx1-ubyte",),
    }


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="digits",
            folder=None,
            format="sklearn-digits",
            channels=1,
            native_size=8,
            pad=2,
            num_classes=10,
            files={},
            mean=(0.5,),
            std=(0.5,),
            description=(
                "scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16 scaled "
                "to [0,1]), padded to 12x12; fixed split train_test_split(test_size=0.25, "
                "random_state=0, stratify=y): 1347 train / 450 test; no download"
            ),
            train_size=1347,
            test_size=450,
            class_names=tuple(str(d) for d in range(10)),
        ),
        DatasetSpec(
            name="mnist",
            folder="MNIST",
            format="idx",
            channels=1,
            native_size=28,
            pad=2,
            num_classes=10,
            files=_idx_files(),
            mean=(0.5,),
            std=(0.5,),
            description="MNIST handwritten digits, 28x28 grey, padded to 32x32 (official split)",
            subdir="raw",
            train_size=60000,
            test_size=10000,
            torchvision_class="MNIST",
            class_names=tuple(str(d) for d in range(10)),
        ),
        DatasetSpec(
            name="fashion-mnist",
            folder="FashionMNIST",
            format="idx",
            channels=1,
            native_size=28,
            pad=2,
            num_classes=10,
            files=_idx_files(),
            mean=(0.5,),
            std=(0.5,),
            description=(
                "Zalando Fashion-MNIST clothing, 28x28 grey, padded to 32x32 (official split)"
            ),
            subdir="raw",
            train_size=60000,
            test_size=10000,
            torchvision_class="FashionMNIST",
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),
        ),
        DatasetSpec(
            name="cifar10",
            folder="cifar-10-batches-py",
            format="cifar-pickle",
            channels=3,
            native_size=32,
            pad=0,
            num_classes=10,
            files={
                "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                "test": ("test_batch",),
            },
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            description="CIFAR-10 natural images, 32x32 RGB, no padding (official python batches)",
            train_size=50000,
            test_size=10000,
            torchvision_class="CIFAR10",
            class_names=(
                "airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck",
            ),
        ),
    )
}


def dataset_names() -> list[str]:
    """The valid dataset names, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (case-insensitive); :class:`QcreepError` if it is unknown."""
    key = name.strip().lower() if isinstance(name, str) else name
    spec = DATASETS.get(key) if isinstance(key, str) else None
    if spec is None:
        raise QcreepError(
            f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}"
        )
    return spec


def describe_datasets() -> list[dict]:
    """One dict per dataset (sorted by name), for ``qcreep list``.

    Keys: ``name``, ``input_shape`` (C, H, W after padding), ``classes`` (number of classes),
    ``train_size``, ``test_size`` (``None`` if unknown), ``needs_files``, ``folder`` and
    ``description``.
    """
    rows = []
    for name in dataset_names():
        spec = DATASETS[name]
        rows.append(
            {
                "name": spec.name,
                "input_shape": spec.input_shape,
                "classes": spec.num_classes,
                "train_size": spec.train_size,
                "test_size": spec.test_size,
                "needs_files": spec.needs_files,
                "folder": spec.folder,
                "description": spec.description,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Where the data lives
# --------------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$QCREEP_DATA``, else the user cache folder.

    The cache folder is ``$XDG_CACHE_HOME/qcreep/data`` if ``XDG_CACHE_HOME`` is set to an absolute
    path, else ``~/.cache/qcreep/data``. Nothing is created; ``~`` is expanded.
    """
    if data_dir is not None:
        if isinstance(data_dir, str) and not data_dir.strip():
            raise QcreepError(
                "data_dir is an empty string; pass a folder path, or None to use "
                f"${ENV_DATA_DIR} or the user cache folder"
            )
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "qcreep" / "data"


# --------------------------------------------------------------------------------------------------
# File readers
# --------------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, gunzipped if its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        what = "gzip file" if path.suffix == ".gz" else "file"
        reason = _one_line(str(exc)) or type(exc).__name__
        raise DataError(
            f"cannot read {what} {path}: {reason}; the file is truncated or corrupt, "
            "delete it and download it again"
        ) from exc


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` is gunzipped) into a read-only uint8 array.

    ``expected_magic`` (e.g. ``0x00000803`` for images, ``0x00000801`` for labels) pins the number
    of dimensions. A bad magic number, or a byte length that does not match the dimensions in the
    header, raises :class:`DataError` naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(
            f"IDX file {path} is {len(data)} bytes, too short for the 4-byte magic number; "
            "the file is truncated or corrupt, download it again"
        )
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"IDX file {path} has magic number 0x{magic:08X}, expected 0x{expected_magic:08X} "
            f"({_magic_name(expected_magic)}); it is not the right IDX file or it is corrupt"
        )
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] == 0:
        raise DataError(
            f"IDX file {path} has magic number 0x{magic:08X}, expected 0x000008NN (unsigned-byte "
            "IDX with NN dimensions); it is not an IDX file or it is corrupt"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {path} is {len(data)} bytes, too short for its {header}-byte header; "
            "the file is truncated or corrupt, download it again"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(data) != expected:
        shape = "x".join(str(d) for d in dims)
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"IDX file {path} is {len(data)} bytes but its header ({shape}) needs exactly "
            f"{expected} bytes; the file {state} or is corrupt, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _magic_name(magic: int) -> str:
    if magic == _IDX_IMAGES_MAGIC:
        return "IDX images: unsigned bytes, 3 dimensions"
    if magic == _IDX_LABELS_MAGIC:
        return "IDX labels: unsigned bytes, 1 dimension"
    return "IDX"


class _SafeUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR-10 batch contains: dicts, lists, bytes, ints and numpy arrays."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} (only numpy arrays are allowed)"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # avoid numpy 2 deprecation
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    The pickle must be a dict with ``b"data"`` (N x 3072 uint8; each row holds the red, green and
    blue 32x32 planes, row-major) and ``b"labels"`` (N ints in 0..9). Anything else raises
    :class:`DataError` naming the file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    fix = "the file is corrupt or not a CIFAR-10 python batch, download it again"
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can raise almost anything
        reason = _one_line(str(exc)) or type(exc).__name__
        raise DataError(f"cannot unpickle CIFAR-10 batch {path}: {reason}; {fix}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(repr(k) for k in batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"CIFAR-10 batch {path} must be a dict with keys b'data' and b'labels', found {found}; "
            f"{fix}"
        )
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or (
        data.shape[1] != 3 * 32 * 32
    ):
        desc = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(
            f"CIFAR-10 batch {path}: b'data' is a {desc}, expected a uint8 array of shape "
            f"(N, 3072); {fix}"
        )
    try:
        labels = np.asarray(labels)
    except Exception:  # ragged or odd objects
        labels = np.asarray([None])
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(
        labels.dtype, np.integer
    ):
        raise DataError(
            f"CIFAR-10 batch {path}: b'labels' must be {data.shape[0]} integers (one per row of "
            f"b'data'), got {labels.dtype} of shape {labels.shape}; {fix}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------------------------------
# Finding (and optionally downloading) files
# --------------------------------------------------------------------------------------------------


def _locate(spec: DatasetSpec, root: Path, name: str) -> Path | None:
    """Path of file ``name`` of ``spec`` under ``root``; IDX files may also be gzipped."""
    folder = spec.file_dir(root)
    plain = folder / name
    if plain.is_file():
        return plain
    if spec.format == "idx":
        gz = folder / (name + ".gz")
        if gz.is_file():
            return gz
    return None


def _all_names(spec: DatasetSpec) -> list[str]:
    return [name for names in spec.files.values() for name in names]


def _missing(spec: DatasetSpec, root: Path) -> list[str]:
    return [name for name in _all_names(spec) if _locate(spec, root, name) is None]


def _import_torchvision():
    """``(module, None)`` if torchvision imports, else ``(None, reason)``."""
    try:
        import torchvision  # noqa: PLC0415 - optional dependency
        import torchvision.datasets  # noqa: F401, PLC0415
    except Exception as exc:  # a broken install can fail with anything, not just ImportError
        return None, _one_line(f"{type(exc).__name__}: {exc}")
    return torchvision, None


def _ensure_files(spec: DatasetSpec, root: Path, download: bool) -> None:
    missing = _missing(spec, root)
    if not missing:
        return
    if not download:
        how = "or pass download=True (needs torchvision) to download them"
    else:
        torchvision, reason = _import_torchvision()
        if torchvision is None:
            how = f"or pip install torchvision to download them (torchvision unavailable: {reason})"
        else:
            cls = getattr(torchvision.datasets, spec.torchvision_class)
            try:
                cls(root=str(root), train=True, download=True)
                cls(root=str(root), train=False, download=True)
            except Exception as exc:
                reason = _one_line(f"{type(exc).__name__}: {exc}")
                raise DataError(
                    f"downloading {spec.name} with torchvision into {root} failed ({reason}); "
                    f"check the network, or put the files in {spec.file_dir(root)} yourself"
                ) from exc
            missing = _missing(spec, root)
            if not missing:
                return
            how = "(torchvision's download did not produce them)"
    suffix = "[.gz]" if spec.format == "idx" else ""
    listed = ", ".join(name + suffix for name in missing)
    example = f"{spec.file_dir(Path('DIR')).as_posix()}/{missing[0]}{suffix}"
    raise DataError(
        f"{spec.name} data not found: missing {listed} in {spec.file_dir(root)}; pass --data-dir "
        f"DIR or set {ENV_DATA_DIR}=DIR for a DIR containing {example} and the other files, {how}"
    )


def ensure_available(name: str, data_dir=None, download: bool = True) -> None:
    """Check (and, with torchvision, fetch) the files of dataset ``name`` without loading them."""
    spec = get_spec(name)
    if spec.needs_files:
        _ensure_files(spec, resolve_data_dir(data_dir), download)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split of a dataset: images ``x`` (N, C, H, W) float32 and labels ``y`` (N,) int64."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[:1] != self.y.shape[:1]:
            raise QcreepError(
                f"Split has {self.x.shape[0] if self.x.ndim else 0} images but "
                f"{self.y.shape[0] if self.y.ndim else 0} labels; x and y need the same length"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _check_limit(name: str, value) -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise QcreepError(
            f"{name} must be a positive integer or None (all examples), got {value!r}"
        )
    return int(value)


def _preprocess(images: np.ndarray, max_value: float, spec: DatasetSpec) -> Tensor:
    """``(N, C, h, w)`` raw pixels in ``[0, max_value]`` -> padded, normalised float32 tensor."""
    n, c, h, w = images.shape
    p = spec.pad
    out = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=np.float32)
    out[:, :, p : p + h, p : p + w] = images  # exact cast; the zero border stays 0 in [0, 1]
    x = torch.from_numpy(out)
    x.div_(max_value)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, c, 1, 1)
    return x.sub_(mean).div_(std)


def _make_split(images: np.ndarray, labels: np.ndarray, max_value: float, spec: DatasetSpec,
                limit: int | None) -> Split:
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Split(_preprocess(images, max_value, spec), torch.from_numpy(labels.astype(np.int64)))


def _check_labels(spec: DatasetSpec, labels: np.ndarray, path: Path) -> None:
    if labels.size and int(labels.max()) >= spec.num_classes:
        raise DataError(
            f"{path} contains label {int(labels.max())}, but {spec.name} labels must lie in "
            f"0..{spec.num_classes - 1}; the file is corrupt or belongs to another dataset"
        )


def _load_idx_split(spec: DatasetSpec, root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _locate(spec, root, spec.files[f"{part}_images"][0])
    lab_path = _locate(spec, root, spec.files[f"{part}_labels"][0])
    images = read_idx(img_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, _IDX_LABELS_MAGIC)
    size = spec.native_size
    if images.shape[1:] != (size, size):
        raise DataError(
            f"IDX images {img_path} are {images.shape[1]}x{images.shape[2]}, expected "
            f"{size}x{size} for {spec.name}; the file belongs to another dataset"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} "
            "labels; they must match, download both files again"
        )
    _check_labels(spec, labels, lab_path)
    return images[:, None, :, :], labels


def _load_cifar_split(spec: DatasetSpec, root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in spec.files[part]:
        path = _locate(spec, root, name)
        x, y = read_cifar_batch(path)
        _check_labels(spec, y, path)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


_Arrays = tuple[np.ndarray, np.ndarray]


def _load_digits(spec: DatasetSpec) -> tuple[_Arrays, _Arrays]:
    from sklearn.datasets import load_digits  # noqa: PLC0415 - slow import, only when needed
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    bunch = load_digits()
    images = bunch.images.reshape(-1, 1, spec.native_size, spec.native_size)
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return (x_tr, y_tr), (x_te, y_te)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    download: bool = True,
) -> tuple[Split, Split]:
    """Load dataset ``name`` as ``(train, test)``, preprocessed as described in the module docs.

    ``data_dir`` is resolved with :func:`resolve_data_dir` (unused for ``digits``). ``max_train`` /
    ``max_test`` keep the first N examples of each split (all of them if N is larger); they must
    be positive integers or ``None``. Missing files are fetched with torchvision when
    ``download`` is true and torchvision is installed; otherwise :class:`DataError` says which
    files are expected where.
    """
    spec = get_spec(name)
    limit_train = _check_limit("max_train", max_train)
    limit_test = _check_limit("max_test", max_test)

    if spec.format == "sklearn-digits":
        (x_tr, y_tr), (x_te, y_te) = _load_digits(spec)
        max_value = 16.0
    else:
        root = resolve_data_dir(data_dir)
        _ensure_files(spec, root, download)
        loader = _load_idx_split if spec.format == "idx" else _load_cifar_split
        x_tr, y_tr = loader(spec, root, "train")
        x_te, y_te = loader(spec, root, "test")
        max_value = 255.0

    train = _make_split(x_tr, y_tr, max_value, spec, limit_train)
    test = _make_split(x_te, y_te, max_value, spec, limit_test)
    return train, test


def _round_up(x: float) -> str:
    """``x`` rounded up to two significant digits, as text (``0.037`` for 0.0368)."""
    digits = 1 - math.floor(math.log10(x))
    return f"{math.ceil(x * 10**digits) / 10**digits:g}"


def validation_split(train: Split, fraction: float, split_seed: int = 0) -> tuple[Split, Split | None]:
    """Carve a fixed, stratified validation split from ``train``; returns ``(fit_part, validation)``.

    For each class ``c`` with ``n_c`` training examples, ``round(fraction * n_c)`` of them (at
    least one, at most ``n_c - 1``) go to validation, chosen by a permutation drawn from
    ``numpy.random.default_rng(split_seed)``. Both parts keep the original order of the examples
    they hold. ``fraction == 0`` returns ``(train, None)``.

    A split too small to be what was asked for is an error (a :class:`QcreepError` that names the
    sizes and what is valid), not a silent surprise: every class needs at least 2 examples (one to
    fit, one to validate), and the one-per-class minimum must not make the validation split more
    than twice ``fraction`` of ``train`` (5 examples of 2 classes would put 40% in validation).

    Example:
        >>> train, _ = load_dataset("digits")
        >>> fit_part, val = validation_split(train, 0.1)
        >>> len(fit_part) + len(val) == len(train), len(val)
        (True, 136)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise QcreepError(f"the validation fraction must be a number in [0, 1), got {fraction!r}")
    if fraction == 0:
        return train, None
    labels = train.y.numpy()
    classes, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    few = [f"class {c}: {k}" for c, k in zip(classes.tolist(), counts.tolist()) if k < 2]
    if few:
        raise QcreepError(f"a stratified validation split of {n} training examples needs at least 2 of each class "
                          f"(one to fit, one to validate), but {len(few)} class(es) have 1 ({', '.join(few[:5])}"
                          f"{', ...' if len(few) > 5 else ''}); use more training examples (--max-train), or "
                          "--val-fraction 0 (no validation split; then also --no-tune)")
    sizes = np.clip(np.rint(fraction * counts).astype(int), 1, counts - 1)
    k_total = int(sizes.sum())
    if k_total > 2 * fraction * n:
        enough = math.ceil(len(classes) / (2 * fraction))
        raise QcreepError(f"a validation split stratified by class takes at least one example of each of the "
                          f"{len(classes)} classes: {k_total} of {n} training examples ({100 * k_total / n:.2g}%), "
                          f"more than twice the asked {100 * fraction:g}%; use more training examples (at least "
                          f"about {enough}: --max-train), or --val-fraction {_round_up(k_total / (2 * n))} or more")
    rng = np.random.default_rng(split_seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, sizes)]
    val_mask = np.zeros(n, dtype=bool)
    val_mask[np.concatenate(chosen)] = True
    val_idx = torch.from_numpy(np.flatnonzero(val_mask))
    fit_idx = torch.from_numpy(np.flatnonzero(~val_mask))
    return Split(train.x[fit_idx], train.y[fit_idx]), Split(train.x[val_idx], train.y[val_idx])
