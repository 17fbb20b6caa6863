"""Your own data: ``.npz`` and ``.csv`` files, image folders, arrays, tensors and torch datasets.

:func:`load_data` turns a data spec into ``(train, test, info)``: two
:class:`~qcreep.data.Split` objects and a :class:`DataInfo` that says what was loaded. A spec is

* a built-in dataset name (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``; see
  :mod:`qcreep.data`);
* ``PATH.npz`` with arrays ``x_train, y_train, x_test, y_test``, or ``x, y`` that are split into
  train and test (stratified, ``test_fraction``, seeded by ``split_seed``). It is read with
  ``allow_pickle=False``: a file holding pickled objects is refused, never unpickled;
* ``PATH.csv``: one example per row, the label in the last column unless ``target`` names a
  column (by header name or by index, negative indices count from the end). A header row is
  detected: the first row is a header when one of its feature cells is not a number;
* a folder in torchvision's ``ImageFolder`` layout (``ROOT/CLASS/IMAGE.png``), with ``train/``
  and ``test/`` subfolders, or one such folder that is split like ``x, y`` above.

``test_data`` names a separate test file (or folder) of the same kind; the spec then holds the
training examples only. From Python, ``load_data`` also takes ``(x, y)`` or ``(x_train, y_train,
x_test, y_test)`` as numpy arrays or tensors, or ``(train_dataset, test_dataset)`` torch datasets
whose items are ``(x, y)``.

What comes out:

* labels of any kind (``-1/1``, strings, floats that are whole numbers) become classes
  ``0 .. K-1`` in sorted order of the original labels; :attr:`DataInfo.classes` keeps the map;
* features are float32. Tabular data (one vector per example) is standardised by the caller with
  the statistics of the part it trains on (:func:`standardize`; ``standardize=False`` leaves it as
  it is). Images are ``(N, C, H, W)``: 8-bit images are scaled to ``[0, 1]`` and normalised with
  mean 0.5 and std 0.5, as the built-in datasets are; float images are kept as they are. An
  ``.npz`` image array of shape ``(N, H, W)`` gets one channel; ``(N, C, H, W)`` is channels-first.

Bad data is a :class:`~qcreep.errors.DataError` with one line that says what was wrong and what
would be valid, raised before anything is written: a missing or unreadable file, NaN or inf,
ragged rows, a missing target column, a single class, a class too small for the split, ``x`` and
``y`` of different lengths, an unreadable image, a pickled object inside an ``.npz``.

Example:
    >>> import numpy as np
    >>> x = np.arange(40, dtype=float).reshape(20, 2)
    >>> y = np.array(["no", "yes"] * 10)
    >>> train, test, info = load_data((x, y), test_fraction=0.25)
    >>> len(train), len(test), info.classes, info.input_shape, info.tabular
    (16, 4, ['no', 'yes'], (2,), True)
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from qcreep.data import Split, dataset_names, get_spec, load_dataset
from qcreep.errors import DataError, QcreepError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass
class DataInfo:
    """What :func:`load_data` loaded.

    Attributes:
        spec: the data spec as given (a name, a path, or ``"<arrays>"`` / ``"<datasets>"``).
        kind: ``builtin``, ``npz``, ``csv``, ``folder``, ``arrays`` or ``datasets``.
        input_shape: per-example shape of ``x``.
        num_classes: K; labels are ``0 .. K-1``.
        classes: the original label of each class, in class order (as text or numbers).
        tabular: one feature vector per example (standardised by default), not images.
        digest: SHA-1 of the data (the files' bytes, or the arrays' values), so that runs on
            different data never share a file.
        columns: feature column names of a CSV with a header.
    """

    spec: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    classes: list
    tabular: bool
    digest: str
    columns: list[str] = field(default_factory=list)
    test_spec: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


# ------------------------------------------------------------------------------------------------
# labels and checks


def encode_labels(*label_arrays, where: str = "the data") -> tuple[list[np.ndarray], list]:
    """Labels of any kind as classes ``0 .. K-1`` in sorted order, with the sorted original labels."""
    arrays = [np.asarray(a) for a in label_arrays]
    for a in arrays:
        if a.ndim != 1:
            raise DataError(f"labels in {where} must be one value per example (shape (N,)), got shape {a.shape}")
    joined = np.concatenate(arrays) if arrays else np.array([])
    if joined.dtype.kind == "f":
        if not np.isfinite(joined).all():
            raise DataError(f"labels in {where} contain NaN or inf; every example needs a class")
        if (joined == np.round(joined)).all():
            arrays = [a.astype(np.int64) for a in arrays]
            joined = joined.astype(np.int64)
    elif joined.dtype.kind not in "iub":
        arrays = [a.astype(str) for a in arrays]
        joined = joined.astype(str)
    classes = np.unique(joined)
    if len(classes) < 2:
        shown = classes[0].item() if len(classes) else "none"
        raise DataError(f"{where} has a single class ({shown!r}); a classifier needs at least two")
    encoded = [np.searchsorted(classes, a).astype(np.int64) for a in arrays]
    return encoded, [c.item() for c in classes]


def _check_features(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` checked: numeric, finite, ``(N, F)``, ``(N, H, W)`` or ``(N, C, H, W)``.

    8-bit arrays stay ``uint8`` (so that :func:`_as_images` knows to scale them); others become float32.
    """
    if x.dtype == object:
        raise DataError(f"features in {where} are Python objects, not numbers; store a numeric array")
    if x.dtype.kind == "c":
        raise DataError(f"features in {where} are complex numbers; give real features (for example the real "
                        "and imaginary parts as separate features)")
    if x.ndim < 2 or x.ndim > 4:
        raise DataError(f"features in {where} must be (N, F) vectors, (N, H, W) or (N, C, H, W) images; "
                        f"got shape {x.shape}")
    if x.dtype != np.uint8:
        try:
            x = x.astype(np.float32) if x.dtype.kind != "f" or x.dtype.itemsize > 4 else x
        except (TypeError, ValueError):
            raise DataError(f"features in {where} are not numbers (dtype {x.dtype})") from None
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"features in {where} contain NaN or inf (first in example {row}); "
                        "fill or drop those values first")
    return x


def _check_lengths(x, y, where: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{where} has {len(x)} examples in x but {len(y)} labels in y; they must match")
    if len(x) == 0:
        raise DataError(f"{where} holds no examples")


def _as_images(x: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` gets a channel axis; 8-bit images are scaled and normalised like the built-in datasets."""
    scaled = x.dtype == np.uint8
    if x.ndim == 3:
        x = x[:, None]
    x = x.astype(np.float32)
    if scaled:
        x = (x / 255.0 - 0.5) / 0.5
    return x


def _shape_features(x: np.ndarray) -> tuple[np.ndarray, bool]:
    if x.ndim == 2:
        return x.astype(np.float32, copy=False), True  # 8-bit tabular features are numbers, not pixels
    if x.ndim in (3, 4):
        return _as_images(x), False
    raise DataError(f"features must be (N, F) vectors, (N, H, W) or (N, C, H, W) images; got shape {x.shape}")


def stratified_split(x, y: np.ndarray, fraction: float, seed: int, where: str, classes=None):
    """``(x_a, y_a, x_b, y_b)`` with a stratified share ``fraction`` in b; every class needs 2 examples.

    ``classes`` (the original label of each class index) names a class in the error message.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise QcreepError(f"test_fraction must be a number in (0, 1), got {fraction!r}")
    present, counts = np.unique(y, return_counts=True)
    small = [(c, n) for c, n in zip(present, counts) if n < 2]
    if small:
        c, n = small[0]
        shown = classes_shown(classes, c)
        raise DataError(f"class {shown} in {where} has {n} example; a stratified test split needs at least 2 per "
                        "class (add examples, drop the class, or give a separate test file)")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(y), dtype=bool)
    for c in present:
        members = np.flatnonzero(y == c)
        k = min(max(int(round(fraction * len(members))), 1), len(members) - 1)
        test_mask[rng.permutation(members)[:k]] = True
    return x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]


def classes_shown(classes, index) -> str:
    """A class as the user labelled it (``'dog'``, ``-1``), given its index ``0 .. K-1``."""
    index = int(index)
    return repr(classes[index]) if classes is not None and 0 <= index < len(classes) else str(index)


def standardize(fit: Split, *others: Split) -> tuple[Split, ...]:
    """Standardise tabular features with the mean and standard deviation of ``fit`` (constant columns: std 1).

    Returns ``fit`` and ``others`` standardised with ``fit``'s statistics, so that validation and
    test examples never inform the scaling.
    """
    mean = fit.x.mean(0, keepdim=True)
    std = fit.x.std(0, unbiased=False, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(Split((s.x - mean) / std, s.y) for s in (fit, *others))


# ------------------------------------------------------------------------------------------------
# readers


def _digest_files(paths) -> str:
    """SHA-1 of the files' bytes and their paths relative to their common folder (an image moved to
    another class folder changes its label, so it changes the digest)."""
    paths = [Path(p) for p in paths]
    root = Path(os.path.commonpath([p.absolute().parent for p in paths])) if paths else Path()
    sha = hashlib.sha1()
    for path in sorted(paths, key=str):
        sha.update(path.absolute().relative_to(root).as_posix().encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:16]


def _digest_arrays(*arrays) -> str:
    sha = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        sha.update(str((a.dtype.str, a.shape)).encode())
        sha.update(a.tobytes() if a.dtype.kind != "U" else "\x00".join(a.ravel().tolist()).encode())
    return sha.hexdigest()[:16]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        handle = open(path, "rb")  # ours, so that it is closed whatever np.load raises
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror or type(err).__name__})") from None
    with handle:
        magic = handle.read(4)
        if magic[:2] != b"PK":  # an .npz is a zip archive; np.load would try anything else as .npy or pickle
            what = "an .npy array" if magic == b"\x93NUM" else "not a zip archive"
            raise DataError(f"{path} is not an .npz file ({what}); save the arrays with numpy.savez(path, x=..., "
                            "y=...)")
        handle.seek(0)
        try:
            with np.load(handle, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise DataError(f"{path} holds a pickled object; qcreep reads .npz files without pickle: save "
                                "plain numeric (or string) arrays") from None
            raise DataError(f"{path} is not a readable .npz file ({' '.join(str(err).split())})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{path} is not a readable .npz file ({type(err).__name__}); save it with "
                            "numpy.savez") from None


def _npz_parts(path: Path) -> tuple[tuple, tuple | None]:
    arrays = _read_npz(path)
    names = set(arrays)
    if {"x_train", "y_train", "x_test", "y_test"} <= names:
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    if {"x", "y"} <= names:
        return (arrays["x"], arrays["y"]), None
    raise DataError(f"{path} holds arrays {', '.join(sorted(names)) or '(none)'}; an .npz for qcreep holds "
                    "x_train, y_train, x_test, y_test, or x and y")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, target) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(65536)
            handle.seek(0)
            try:
                delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
            except csv.Error:
                delimiter = ","
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read as a text CSV file ({type(err).__name__})") from None
    if not rows:
        raise DataError(f"{path} is empty; a CSV for qcreep has one example per row and a label column")
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{path} has {width} column; it needs at least one feature column and a label column")
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DataError(f"{path} line {number} has {len(row)} columns, the first row has {width}; "
                            "every row needs the same columns")
    if target is not None and not _is_int_text(target):  # a label column named in the header
        header = not all(_is_number(cell.strip()) for cell in rows[0])
        column = _target_column(rows[0], target, path, header=header)
    else:
        column = _target_column(rows[0], target, path)
        features_first = [cell for i, cell in enumerate(rows[0]) if i != column]
        header = not all(_is_number(cell.strip()) for cell in features_first)
    names = [cell.strip() for cell in rows[0]] if header else [f"column {i}" for i in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path} has a header row and no examples")
    values = np.empty((len(body), width - 1), dtype=np.float32)
    labels = []
    first = 2 if header else 1
    for r, row in enumerate(body):
        k = 0
        for i, cell in enumerate(row):
            if i == column:
                labels.append(cell.strip())
                continue
            text = cell.strip()
            if not text:
                raise DataError(f"{path} line {r + first}, column '{names[i]}' is empty; fill or drop missing "
                                "values first")
            try:
                values[r, k] = float(text)
            except ValueError:
                hint = "" if target is not None else f" (if '{names[i]}' is the label, give --target)"
                raise DataError(f"{path} line {r + first}, column '{names[i]}' holds {text!r}, not a number; "
                                f"feature columns must be numeric{hint}") from None
            k += 1
    labels = np.array(labels)
    if all(_is_number(v) for v in labels):
        labels = labels.astype(np.float64)
    return values, labels, [n for i, n in enumerate(names) if i != column]


def _is_int_text(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and value.lstrip("-").isdigit()


def _target_column(first_row: list[str], target, path: Path, header: bool = True) -> int:
    """The index of the label column; ``header`` False: the first row is data, so names cannot match."""
    width = len(first_row)
    if target is None:
        return width - 1
    if _is_int_text(target):
        index = int(target)
        if not -width <= index < width:
            raise DataError(f"--target {target} is out of range for {path}, which has {width} columns "
                            f"(indices 0..{width - 1}, or -{width}..-1)")
        return index % width
    names = [cell.strip() for cell in first_row]
    if target in names:
        return names.index(target)
    if header is False or sum(not _is_number(cell) for cell in names) <= 1:  # the first row looks like data
        raise DataError(f"{path} has no header row, so it has no column '{target}'; give the label column's "
                        f"index (0..{width - 1}, or -{width}..-1)")
    raise DataError(f"{path} has no column '{target}'; columns: {', '.join(names)} (or give an index)")


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - only for image folders

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"image {path} cannot be read ({type(err).__name__}); remove it or replace it with a "
                        "valid image") from None


def _image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class folders; an image folder holds one subfolder per class "
                        "(ROOT/CLASS/IMAGE.png)")
    files, labels = [], []
    for class_dir in class_dirs:
        images = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files += images
        labels += [class_dir.name] * len(images)
    if not files:
        raise DataError(f"{root} has class folders but no images ({', '.join(IMAGE_SUFFIXES)})")
    pictures = [_read_image(p) for p in files]
    gray = all(p.mode in ("1", "L", "I;16", "I", "F") for p in pictures)
    mode = "L" if gray else "RGB"
    arrays = []
    first_size = pictures[0].size
    for path, picture in zip(files, pictures):
        if picture.size != first_size:
            raise DataError(f"images in {root} differ in size: {files[0].name} is {first_size[0]}x{first_size[1]}, "
                            f"{path.name} is {picture.size[0]}x{picture.size[1]}; resize them to one size first")
        arrays.append(np.asarray(picture.convert(mode), dtype=np.uint8))
    x = np.stack(arrays)
    x = x[:, None] if gray else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, np.array(labels), files


def _read_file_or_folder(path: Path, target, role: str) -> tuple[tuple, tuple | None, str, list[str], list[Path]]:
    """``(train part, test part or None, kind, columns, files read)`` of one path."""
    if not path.exists():
        raise DataError(f"{role} {path} does not exist; give a built-in dataset ({', '.join(dataset_names())}), "
                        "a .npz or .csv file, or an image folder")
    if path.is_dir():
        train, test = path / "train", path / "test"
        if train.is_dir() and test.is_dir():
            x_tr, y_tr, f_tr = _image_folder(train)
            x_te, y_te, f_te = _image_folder(test)
            return (x_tr, y_tr), (x_te, y_te), "folder", [], f_tr + f_te
        if train.is_dir() != test.is_dir():
            have, missing = ("train", "test") if train.is_dir() else ("test", "train")
            raise DataError(f"{path} has a {have}/ folder but no {missing}/ folder; give both, or put the class "
                            "folders directly in it to have it split")
        x, y, files = _image_folder(path)
        return (x, y), None, "folder", [], files
    suffix = path.suffix.lower()
    if suffix == ".npz":
        train_part, test_part = _npz_parts(path)
        return train_part, test_part, "npz", [], [path]
    if suffix in (".csv", ".tsv", ".txt"):
        x, y, columns = _read_csv(path, target)
        return (x, y), None, "csv", columns, [path]
    raise DataError(f"{role} {path} is a '{suffix}' file; qcreep reads .npz, .csv and image folders")


def _from_python(spec) -> tuple[tuple, tuple | None, str]:
    from torch.utils.data import Dataset  # noqa: PLC0415

    def arr(v):
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().numpy()
        try:
            return np.asarray(v)
        except ValueError:
            raise DataError("the given data has ragged rows (examples of different lengths); every example "
                            "needs the same shape") from None

    if isinstance(spec, tuple | list) and len(spec) == 2 and all(isinstance(d, Dataset) for d in spec):
        parts = []
        for dataset in spec:
            xs, ys = [], []
            for index in range(len(dataset)):
                item = dataset[index]
                if not isinstance(item, tuple | list) or len(item) != 2:
                    raise DataError(f"dataset items must be (x, y) pairs; item {index} is {type(item).__name__}")
                xs.append(arr(item[0]))
                ys.append(arr(item[1]).item() if arr(item[1]).size == 1 else arr(item[1]))
            try:
                parts.append((np.stack(xs), np.array(ys)))
            except ValueError:
                raise DataError("dataset items have features of different shapes; every x needs one shape") from None
        return parts[0], parts[1], "datasets"
    if isinstance(spec, tuple | list) and len(spec) in (2, 4):
        values = [arr(v) for v in spec]
        if len(values) == 2:
            return (values[0], values[1]), None, "arrays"
        return (values[0], values[1]), (values[2], values[3]), "arrays"
    raise QcreepError(f"data must be a built-in name, a path, (x, y), (x_train, y_train, x_test, y_test) or "
                      f"(train_dataset, test_dataset); got {type(spec).__name__}")


# ------------------------------------------------------------------------------------------------
# a subset of the classes


def parse_classes(value) -> list[str] | None:
    """``"0-7"``, ``"0,2,5"``, ``["cat", "dog"]`` or ``None`` -> a list of class tokens (ranges expanded)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str | int) else list(value)
    tokens: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            low, dash, high = part.partition("-")
            if dash and low.strip().isdigit() and high.strip().isdigit():
                lo, hi = int(low), int(high)
                if lo > hi:
                    raise QcreepError(f"class range '{part}' is empty; write it low-high, e.g. 0-7")
                tokens.extend(str(k) for k in range(lo, hi + 1))
            else:
                tokens.append(part)
    if not tokens:
        raise QcreepError(f"no classes in {value!r}; give labels such as 0-7 or 0,2,5 or class names")
    return tokens


def class_indices(info: DataInfo, classes) -> list[int]:
    """The class indices (``0 .. K-1`` of ``info``) of the given labels or class names, sorted."""
    tokens = parse_classes(classes)
    names = [str(c) for c in info.classes]
    keep = set()
    for token in tokens:
        if token in names:
            keep.add(names.index(token))
        elif token.isdigit() and int(token) < info.num_classes:
            keep.add(int(token))
        else:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise DataError(f"class '{token}' is not a class of {info.spec} (its classes: {shown})")
    if len(keep) < 2:
        raise DataError(f"--classes keeps {len(keep)} class of {info.spec}; a classifier needs two")
    return sorted(keep)


def _keep_classes(split: Split, keep: list[int]) -> Split:
    table = torch.full((int(split.y.max()) + 1 if len(split) else 1,), -1, dtype=torch.int64)
    table[torch.tensor([k for k in keep if k < table.numel()], dtype=torch.int64)] = \
        torch.arange(sum(k < table.numel() for k in keep))
    new = table[split.y]
    mask = new >= 0
    return Split(split.x[mask], new[mask])


def select_classes(info: DataInfo, keep: list[int]) -> DataInfo:
    """``info`` for the classes ``keep`` only."""
    chosen = [info.classes[k] for k in keep]
    return replace(info, num_classes=len(keep), classes=chosen,
                   digest=f"{info.digest}|classes={','.join(map(str, keep))}")


# ------------------------------------------------------------------------------------------------
# the entry point


def is_builtin(spec) -> bool:
    """True for the name of a built-in dataset (any case)."""
    return isinstance(spec, str) and spec.strip().lower() in dataset_names()


def load_data(spec, *, test_data=None, target=None, test_fraction: float = 0.2, split_seed: int = 0,
              data_dir=None, max_train: int | None = None, max_test: int | None = None,
              download: bool = True, classes=None) -> tuple[Split, Split, DataInfo]:
    """``(train, test, info)`` for a data spec; see the module docs for the specs and the checks.

    ``max_train`` / ``max_test`` keep the first N examples of each split (after a stratified split
    where there is one, and after ``classes`` selects classes). ``data_dir`` and ``download`` are for
    the built-in datasets. ``classes`` keeps the examples of the named classes (see
    :func:`select_classes`), relabelled ``0 .. K-1`` in class order.
    """
    if classes is not None:
        train, test, info = load_data(spec, test_data=test_data, target=target, test_fraction=test_fraction,
                                      split_seed=split_seed, data_dir=data_dir, download=download)
        keep = class_indices(info, classes)
        train, test = (_keep_classes(part, keep) for part in (train, test))
        train = Split(train.x[:max_train], train.y[:max_train])
        test = Split(test.x[:max_test], test.y[:max_test])
        return train, test, select_classes(info, keep)
    if is_builtin(spec):
        if test_data is not None:
            raise QcreepError(f"a built-in dataset ('{spec}') brings its own test split; --test-data is for files")
        train, test = load_dataset(spec, data_dir, max_train, max_test, download=download)
        ds = get_spec(spec)
        info = DataInfo(spec, "builtin", tuple(ds.input_shape), ds.num_classes,
                        list(ds.class_names) or list(range(ds.num_classes)), False, f"builtin:{spec}")
        return train, test, info
    files: list[Path] = []
    columns: list[str] = []
    if isinstance(spec, str | os.PathLike):
        path = Path(spec)
        if not path.exists() and path.suffix.lower() not in (".npz", ".csv", ".tsv", ".txt"):
            raise DataError(f"unknown data '{spec}': not a built-in dataset ({', '.join(dataset_names())}) and no "
                            "such file or folder; give a .npz or .csv file or an image folder")
        train_part, test_part, kind, columns, files = _read_file_or_folder(path, target, "data")
        where, shown = str(path), str(spec)
    else:
        train_part, test_part, kind = _from_python(spec)
        where, shown = "the given arrays", f"<{kind}>"
    test_shown = None
    if test_data is not None:
        if test_part is not None:
            raise QcreepError(f"{where} already holds a test split (x_test, y_test or test/); drop --test-data")
        if not isinstance(test_data, str | os.PathLike):
            raise QcreepError("test_data is a file or folder path")
        t_train, t_test, _, _, t_files = _read_file_or_folder(Path(test_data), target, "test data")
        if t_test is not None:
            raise QcreepError(f"test data {test_data} holds a train and a test split; give one split")
        test_part, files, test_shown = t_train, files + t_files, str(test_data)
    x_tr, y_tr = train_part
    _check_lengths(x_tr, y_tr, where)
    if test_part is not None:
        _check_lengths(test_part[0], test_part[1], test_shown or where)
    x_tr = _check_features(np.asarray(x_tr), where)
    digest = _digest_files(files) if files else _digest_arrays(*train_part, *(test_part or ()))
    if test_part is None:
        (y_all,), classes = encode_labels(y_tr, where=where)
        x_tr, y_train, x_te, y_test = stratified_split(x_tr, y_all, test_fraction, split_seed, where, classes)
    else:
        x_te = _check_features(np.asarray(test_part[0]), test_shown or where)
        (y_train, y_test), classes = encode_labels(y_tr, test_part[1], where=where)
        if x_te.shape[1:] != x_tr.shape[1:]:
            raise DataError(f"test examples have shape {x_te.shape[1:]}, training examples {x_tr.shape[1:]}; "
                            "they must match")
        if (x_te.dtype == np.uint8) != (x_tr.dtype == np.uint8) and x_tr.ndim > 2:
            raise DataError(f"training images are {x_tr.dtype} and test images {x_te.dtype}; 8-bit images are "
                            "scaled to [-1, 1] and others are kept, so give both the same dtype")
        if len(np.unique(y_train)) < 2:
            raise DataError(f"the training examples of {where} hold a single class; a classifier needs two")
        unseen = np.setdiff1d(np.unique(y_test), y_train)
        if len(unseen):
            shown = ", ".join(classes_shown(classes, c) for c in unseen[:5])
            raise DataError(f"the test examples of {test_shown or where} have class(es) {shown} that no training "
                            "example has; train and test need the same classes")
    x_tr, tabular = _shape_features(x_tr)
    x_te, _ = _shape_features(x_te)
    train = Split(torch.from_numpy(np.ascontiguousarray(x_tr[:max_train])),
                  torch.from_numpy(np.ascontiguousarray(y_train[:max_train])))
    test = Split(torch.from_numpy(np.ascontiguousarray(x_te[:max_test])),
                 torch.from_numpy(np.ascontiguousarray(y_test[:max_test])))
    info = DataInfo(shown, kind, tuple(train.x.shape[1:]), len(classes), classes, tabular, digest, columns,
                    test_shown)
    return train, test, info


# ------------------------------------------------------------------------------------------------
# data of a run, loaded once per process


_LOADED: dict = {}
_MAX_CACHED = 4


_HASHED_STAMP_BYTES = 64 * 2**20


def _stamp(path) -> tuple:
    """What changes when a file or folder changes: its resolved path, sizes and modification times."""
    if path is None:
        return ()
    path = Path(path)
    if not path.exists():
        return (str(path),)
    if path.is_file():
        stat = path.stat()
        # file times can be coarser than two quick writes: a file up to 64 MiB is also hashed
        content = _digest_files([path]) if stat.st_size <= _HASHED_STAMP_BYTES else ""
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, content)
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()]
    return (str(path.resolve()), hashlib.sha1(repr(stats).encode()).hexdigest())


def run_data_key(config) -> tuple:
    """What identifies the data a config loads (its files' stamps included, so an edited file is read again)."""
    return (config.dataset, config.data_dir, config.max_train, config.max_test, config.test_data, config.target,
            config.test_fraction, config.split_seed, _stamp(None if is_builtin(config.dataset) else config.dataset),
            _stamp(config.test_data), _classes_key(config))


def _classes_key(config):
    classes = getattr(config, "classes", None)
    return None if classes is None else tuple(parse_classes(classes))


def load_for(config) -> tuple[Split, Split, DataInfo]:
    """``(train, test, info)`` of a :class:`~qcreep.config.TrainConfig`'s data, loaded once per process."""
    key = run_data_key(config)
    if key not in _LOADED:
        if len(_LOADED) >= _MAX_CACHED:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_data(config.dataset, test_data=config.test_data, target=config.target,
                                 test_fraction=config.test_fraction, split_seed=config.split_seed,
                                 data_dir=config.data_dir, max_train=config.max_train, max_test=config.max_test,
                                 classes=getattr(config, "classes", None))
    return _LOADED[key]


_INFOS: dict = {}


def _info_key(config) -> tuple:
    return (config.dataset, config.test_data, config.target, config.test_fraction, config.split_seed,
            config.max_train, config.max_test, _classes_key(config))


def remember_info(config, info: DataInfo) -> None:
    """Take ``info`` as the description of ``config``'s data in this process (a Ray worker gets the data
    and its description from the driver, and needs no data files)."""
    _INFOS[_info_key(config)] = (_stamps_of(config), info)


def _stamps_of(config) -> tuple:
    return (_stamp(None if is_builtin(config.dataset) else config.dataset), _stamp(config.test_data))


def info_for(config) -> DataInfo:
    """The :class:`DataInfo` of a config's data; a built-in dataset is described from its spec, not loaded."""
    known = _INFOS.get(_info_key(config))
    if known is not None:
        stamps, info = known
        here = Path(str(config.dataset)).exists()
        if not here or stamps == _stamps_of(config):  # a worker without the files, or files unchanged
            return info
    if is_builtin(config.dataset):
        ds = get_spec(config.dataset)
        info = DataInfo(ds.name, "builtin", tuple(ds.input_shape), ds.num_classes,
                        list(ds.class_names) or list(range(ds.num_classes)), False, f"builtin:{ds.name}")
        if getattr(config, "classes", None) is not None:
            info = select_classes(info, class_indices(info, config.classes))
        return info
    info = load_for(config)[2]
    remember_info(config, info)
    return info


def data_label(spec: str) -> str:
    """A short name of a data spec for tables and file names: the built-in name, or the file's stem."""
    if is_builtin(spec):
        return get_spec(spec).name
    stem = Path(str(spec)).stem or "data"
    return "".join(ch if ch.isalnum() or ch in "-" else "-" for ch in stem).strip("-").lower() or "data"
