"""Tests of your own data and your own model: :mod:`qcreep.datasources` and :mod:`qcreep.modelspec`.

Every file is built here, small, under ``tmp_path``; nothing is downloaded. The sections:

* each format loads: ``.npz`` (train/test arrays, ``x, y`` split, 8-bit images), ``.csv`` (with
  and without a header, ``target`` by name and index, any labels), image folders (``train/`` and
  ``test/``, or one folder split), a separate ``test_data`` file, numpy arrays, tensors and torch
  datasets; the digest and ``max_train`` / ``max_test``;
* standardisation of tabular features by :func:`qcreep.train.prepare_data`;
* every bad input is one :class:`~qcreep.errors.QcreepError` line, from Python and from
  ``qcreep run`` (exit code 2, one stderr line, ``--out`` not created); bad model specs too;
* the real console script, as a subprocess, trains on each format at a tiny budget, and gives the
  one-line error on a few bad inputs.

The full table of bad inputs runs through :func:`qcreep.cli.main` in this process (the function
the console script calls), since each subprocess spends seconds importing torch; the console
script itself is run, a few subprocesses at a time in one module fixture, for every format and
for one bad input of each kind (data, model).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from qcreep.cli import main
from qcreep.config import TrainConfig
from qcreep.data import validation_split
from qcreep.datasources import load_data
from qcreep.errors import ConfigError, DataError, QcreepError
from qcreep.modelspec import make_model
from qcreep.train import prepare_data

MODELS = '''\
import math
from torch import nn


def mlp(input_shape, num_classes):
    """Flattens any input: tabular features or images."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 6), nn.ReLU(), nn.Linear(6, num_classes))


class TinyCNN(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        self.conv = nn.Conv2d(c, 2, 3)
        self.fc = nn.Linear(2 * (h - 2) * (w - 2), num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))


def raises(input_shape):
    raise RuntimeError("no GPU here")


def not_a_module():
    return 42


def no_slots():
    return nn.Sequential(nn.Flatten(), nn.ReLU())


NUMBER = 3
INSTANCE = nn.Linear(2, 2)
'''


def _console_script() -> list[str]:
    """The installed ``qcreep`` entry point of this interpreter, else the one on PATH (as tests/test_cli.py)."""
    beside = Path(sys.executable).parent / "qcreep"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("qcreep")
    return [found] if found else [sys.executable, "-m", "qcreep.cli"]


QCREEP = _console_script()
TINY = ["--seeds", "1", "--epochs", "1", "--no-tune", "--no-twins", "--levels", "0", "--threads", "1",
        "--no-progress"]
PARALLEL = 2


# ------------------------------------------------------------------------------------------------
# builders of small files


def features(n: int = 40, f: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(n, f)).round(4)


def write_csv(path: Path, rows, header=None) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_png(path: Path, size=(6, 6), mode: str = "L", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 4, size=(6, 6), mode: str = "L") -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(root / name / f"{i}.png", size, mode, seed=100 * c + i)
    return root


def labelled_csv(path: Path, n: int = 40, labels=("no", "yes"), header=True) -> Path:
    x = features(n)
    rows = [[*row, labels[i % len(labels)]] for i, row in enumerate(x)]
    return write_csv(path, rows, ["a", "b", "c", "label"] if header else None)


# ------------------------------------------------------------------------------------------------
# each format loads


def test_npz_with_train_and_test_arrays(tmp_path):
    x, y = features(30), np.arange(30) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    train, test, info = load_data(path)
    assert (len(train), len(test)) == (20, 10)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    np.testing.assert_allclose(train.x.numpy(), x[:20].astype(np.float32))
    assert test.y.tolist() == y[20:].tolist()
    assert (info.kind, info.input_shape, info.num_classes, info.classes, info.tabular) == \
        ("npz", (3,), 3, [0, 1, 2], True)


def test_npz_with_x_and_y_is_split_stratified(tmp_path):
    x = features(50)
    y = np.array([0] * 30 + [1] * 15 + [2] * 5)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    train, test, info = load_data(path, test_fraction=0.2, split_seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert np.bincount(test.y.numpy()).tolist() == [6, 3, 1]  # round(0.2 n) per class, at least one
    assert np.bincount(train.y.numpy()).tolist() == [24, 12, 4]
    # the parts are disjoint and together are the file
    rows = {tuple(r) for r in np.concatenate([train.x.numpy(), test.x.numpy()])}
    assert rows == {tuple(r) for r in x.astype(np.float32)}
    again = load_data(path, test_fraction=0.2, split_seed=3)[1]
    assert torch.equal(again.x, test.x)
    other = load_data(path, test_fraction=0.2, split_seed=4)[1]
    assert not torch.equal(other.x, test.x)
    assert info.num_classes == 3


def test_npz_images_get_a_channel_and_are_scaled(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 5, 7), dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255
    path = tmp_path / "img.npz"
    np.savez(path, x=pixels, y=np.arange(20) % 2)
    train, test, info = load_data(path, test_fraction=0.25)
    assert train.x.shape[1:] == (1, 5, 7) and info.input_shape == (1, 5, 7) and not info.tabular
    both = torch.cat([train.x, test.x])
    assert both.min() == -1.0 and both.max() == 1.0  # (x / 255 - 0.5) / 0.5, as the built-in datasets
    first = pixels[0].astype(np.float32) / 255 * 2 - 1
    assert any(torch.allclose(row[0], torch.from_numpy(first)) for row in both)


def test_npz_float_images_are_kept(tmp_path):
    x = np.random.default_rng(0).random((12, 2, 4, 4)).astype(np.float32) * 10
    path = tmp_path / "img.npz"
    np.savez(path, x_train=x[:8], y_train=np.arange(8) % 2, x_test=x[8:], y_test=np.arange(4) % 2)
    train, test, info = load_data(path)
    assert info.input_shape == (2, 4, 4)
    np.testing.assert_array_equal(train.x.numpy(), x[:8])


def test_npz_string_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=features(20), y=np.array(["zebra", "ant"] * 10))
    train, _, info = load_data(path)
    assert info.classes == ["ant", "zebra"]
    assert set(train.y.tolist()) == {0, 1}


def test_csv_with_header_and_string_labels(tmp_path):
    path = labelled_csv(tmp_path / "d.csv", labels=("yes", "no", "maybe"), n=30)
    train, test, info = load_data(path, test_fraction=0.2)
    assert (info.kind, info.input_shape, info.tabular) == ("csv", (3,), True)
    assert info.columns == ["a", "b", "c"]
    assert info.classes == ["maybe", "no", "yes"]  # sorted, class k = classes[k]
    assert (len(train), len(test)) == (24, 6)
    x = features(30).astype(np.float32)
    first = np.flatnonzero((train.x.numpy() == x[0]).all(1))
    assert len(first) == 1 and train.y[first[0]].item() == info.classes.index("yes")


def test_csv_without_header_and_minus_one_one_labels(tmp_path):
    x = features(20)
    rows = [[*row, 1 if i % 2 else -1] for i, row in enumerate(x)]
    path = write_csv(tmp_path / "d.csv", rows)
    train, test, info = load_data(path)
    assert info.classes == [-1, 1]
    assert info.columns == ["column 0", "column 1", "column 2"]
    assert len(train) + len(test) == 20  # the first row is an example, not a header
    x32 = x.astype(np.float32)
    for split in (train, test):
        for row, label in zip(split.x.numpy(), split.y.tolist()):
            i = int(np.flatnonzero((x32 == row).all(1))[0])
            assert label == (1 if i % 2 else 0)


@pytest.mark.parametrize("target", ["kind", 0, "0", -4, "-4"])
def test_csv_target_by_name_and_index(tmp_path, target):
    x = features(20)
    rows = [["big" if i % 2 else "small", *row] for i, row in enumerate(x)]
    path = write_csv(tmp_path / "d.csv", rows, ["kind", "a", "b", "c"])
    train, test, info = load_data(path, target=target)
    assert info.classes == ["big", "small"]
    assert info.columns == ["a", "b", "c"] and info.input_shape == (3,)


def test_csv_target_in_the_middle_without_header(tmp_path):
    x = features(20)
    rows = [[row[0], i % 2, row[1]] for i, row in enumerate(x)]
    path = write_csv(tmp_path / "d.csv", rows)
    train, test, info = load_data(path, target=1)
    assert info.input_shape == (2,) and info.classes == [0, 1]
    np.testing.assert_allclose(np.sort(torch.cat([train.x, test.x])[:, 0].numpy()),
                               np.sort(x[:, 0].astype(np.float32)))


def test_csv_float_labels_that_are_whole_numbers(tmp_path):
    rows = [[*row, f"{float(i % 3):.1f}"] for i, row in enumerate(features(30))]
    info = load_data(write_csv(tmp_path / "d.csv", rows))[2]
    assert info.classes == [0, 1, 2]


def test_image_folder_with_train_and_test(tmp_path):
    root = tmp_path / "images"
    image_folder(root / "train", per_class=4)
    image_folder(root / "test", per_class=2)
    train, test, info = load_data(root)
    assert (len(train), len(test)) == (8, 4)
    assert (info.kind, info.input_shape, info.classes, info.tabular) == ("folder", (1, 6, 6), ["cat", "dog"], False)
    assert train.y.tolist() == [0] * 4 + [1] * 4
    assert train.x.min() >= -1 and train.x.max() <= 1 and train.x.min() < -0.9 and train.x.max() > 0.9
    pixels = np.asarray(Image.open(root / "train" / "dog" / "0.png"), dtype=np.float32)
    np.testing.assert_allclose(train.x[4, 0].numpy(), pixels / 255 * 2 - 1, atol=1e-6)


def test_image_folder_split_and_rgb(tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=5, size=(4, 3), mode="RGB")
    train, test, info = load_data(root, test_fraction=0.2)
    assert (len(train), len(test)) == (12, 3)
    assert info.input_shape == (3, 3, 4)  # channels first, height 3, width 4
    assert np.bincount(test.y.numpy()).tolist() == [1, 1, 1]


def test_separate_test_file(tmp_path):
    train_path = labelled_csv(tmp_path / "train.csv", n=20)
    test_path = labelled_csv(tmp_path / "test.csv", n=6)
    train, test, info = load_data(train_path, test_data=test_path)
    assert (len(train), len(test)) == (20, 6)  # the training file is not split
    assert info.test_spec == str(test_path)
    assert info.digest != load_data(train_path)[2].digest


def test_separate_test_folder(tmp_path):
    train_root = image_folder(tmp_path / "train", per_class=3)
    test_root = image_folder(tmp_path / "held_out", per_class=2)
    train, test, info = load_data(train_root, test_data=test_root)
    assert (len(train), len(test), info.num_classes) == (6, 4, 2)


def test_numpy_arrays_and_tensors(tmp_path):
    x, y = features(20), np.array([3, 7] * 10)
    train, test, info = load_data((x, y), test_fraction=0.3)
    assert (len(train), len(test), info.kind, info.classes) == (14, 6, "arrays", [3, 7])
    t_train, t_test, t_info = load_data((torch.from_numpy(x), torch.from_numpy(y)), test_fraction=0.3)
    assert torch.equal(t_train.x, train.x) and torch.equal(t_test.y, test.y)
    assert t_info.digest == info.digest
    four = load_data((x[:15], y[:15], torch.from_numpy(x[15:]), torch.from_numpy(y[15:])))
    assert (len(four[0]), len(four[1])) == (15, 5)


def test_torch_datasets(tmp_path):
    x, y = torch.randn(24, 1, 4, 4), torch.arange(24) % 3
    pair = (TensorDataset(x[:18], y[:18]), TensorDataset(x[18:], y[18:]))
    train, test, info = load_data(pair)
    assert (len(train), len(test), info.kind, info.input_shape) == (18, 6, "datasets", (1, 4, 4))
    assert torch.equal(train.x, x[:18]) and torch.equal(test.y, y[18:])


def test_digest_follows_the_content(tmp_path):
    path = labelled_csv(tmp_path / "d.csv")
    first = load_data(path)[2].digest
    assert load_data(path)[2].digest == first
    text = path.read_text().splitlines()
    text[1] = text[1].replace(text[1].split(",")[0], "99.5", 1)
    path.write_text("\n".join(text) + "\n")
    assert load_data(path)[2].digest != first
    # an image moved to another class folder changes its label, so it changes the digest
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=3)
    before = load_data(root)[2].digest
    (root / "a" / "2.png").rename(root / "b" / "2.png")
    (root / "b" / "0.png").rename(root / "b" / "9.png")  # keep 2 per class for the split
    shutil.copy(root / "b" / "2.png", root / "a" / "5.png")
    assert load_data(root)[2].digest != before


def test_max_train_and_max_test(tmp_path):
    path = tmp_path / "d.npz"
    x, y = features(30), np.arange(30) % 2
    np.savez(path, x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    train, test, _ = load_data(path, max_train=5, max_test=3)
    assert (len(train), len(test)) == (5, 3)
    np.testing.assert_allclose(train.x.numpy(), x[:5].astype(np.float32))  # the first N
    split = load_data(labelled_csv(tmp_path / "d.csv"), max_train=7, max_test=2)
    assert (len(split[0]), len(split[1])) == (7, 2)


# ------------------------------------------------------------------------------------------------
# standardisation


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def test_prepare_data_standardises_with_the_fitted_part(tmp_path, model_file):
    path = labelled_csv(tmp_path / "d.csv", n=60)
    config = TrainConfig(dataset=str(path), model=f"{model_file}:mlp", level=0, val_fraction=0.2).validate()
    data = prepare_data(config)
    assert torch.allclose(data.fit.x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.fit.x.std(0, unbiased=False), torch.ones(3), atol=1e-5)
    # the statistics are the fitted part's alone: validation and test are scaled with them
    train, test, _ = load_data(path)
    fit_raw, val_raw = validation_split(train, 0.2, 0)
    mean, std = fit_raw.x.mean(0), fit_raw.x.std(0, unbiased=False)
    assert torch.allclose(data.val.x, (val_raw.x - mean) / std, atol=1e-5)
    assert torch.allclose(data.test.x, (test.x - mean) / std, atol=1e-5)
    everything = torch.cat([train.x, test.x])
    assert not torch.allclose(mean, everything.mean(0), atol=1e-3)  # so the check above can tell them apart

    kept = prepare_data(TrainConfig(dataset=str(path), model=f"{model_file}:mlp", level=0, val_fraction=0.2,
                                    standardize=False).validate())
    assert torch.equal(kept.fit.x, fit_raw.x) and torch.equal(kept.test.x, test.x)


def test_prepare_data_leaves_images(tmp_path, model_file):
    pixels = np.random.default_rng(0).integers(0, 256, (30, 6, 6), dtype=np.uint8)
    path = tmp_path / "img.npz"
    np.savez(path, x=pixels, y=np.arange(30) % 2)
    config = TrainConfig(dataset=str(path), model=f"{model_file}:TinyCNN", level=0, val_fraction=0.2).validate()
    data = prepare_data(config)
    train, test, _ = load_data(path)
    fit_raw, _ = validation_split(train, 0.2, 0)
    assert torch.equal(data.fit.x, fit_raw.x) and torch.equal(data.test.x, test.x)


# ------------------------------------------------------------------------------------------------
# bad data: one line, from Python and from qcreep run


def _bad_data(root: Path) -> dict:
    """``{case: (data spec, extra load_data keywords, message pattern)}``, files written under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    x, y = features(20), np.arange(20) % 2
    rows = [[*row, "no" if i % 2 else "yes"] for i, row in enumerate(x)]

    def csv_with(name, change, header=True):
        table = [list(map(str, r)) for r in rows]
        change(table)
        return write_csv(root / name, table, ["a", "b", "c", "label"] if header else None)

    def npz(name, **arrays):
        np.savez(root / name, **arrays)
        return root / name

    def cell(r, c, value):
        def change(table):
            table[r][c] = value
        return change

    bad_image = image_folder(root / "bad_image", classes=("a", "b"), per_class=3)
    (bad_image / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    sizes = image_folder(root / "sizes", classes=("a", "b"), per_class=3)
    write_png(sizes / "b" / "1.png", size=(5, 7))
    train_only = image_folder(root / "train_only" / "train", classes=("a", "b"), per_class=3).parent
    (root / "empty.csv").write_text("")
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (root / "text.npz").write_text("x,y\n1,2\n")
    (root / "d.json").write_text("{}")
    labelled_csv(root / "train.csv", n=20)
    write_csv(root / "other_classes.csv", [[*r, "perhaps"] for r in features(4)], ["a", "b", "c", "label"])
    write_csv(root / "narrow.csv", [[r[0], "yes" if i % 2 else "no"] for i, r in enumerate(features(6))],
              ["a", "label"])
    nan_x = x.copy()
    nan_x[7, 1] = np.inf
    return {
        "nan": (csv_with("nan.csv", cell(3, 1, "nan")), {}, r"NaN or inf \(first in example 3\)"),
        "inf": (npz("inf.npz", x=nan_x, y=y), {}, r"NaN or inf \(first in example 7\)"),
        "ragged": (csv_with("ragged.csv", lambda t: t[4].pop(0)), {}, r"line 6 has 3 columns, the first row has 4"),
        "target_name": (csv_with("t.csv", lambda t: None), {"target": "diagnosis"},
                        r"no column 'diagnosis'; columns: a, b, c, label"),
        "target_index": (csv_with("t.csv", lambda t: None), {"target": "4"},
                         r"--target 4 is out of range .* 4 columns"),
        "target_negative": (csv_with("t.csv", lambda t: None), {"target": "-5"}, r"--target -5 is out of range"),
        "target_no_header": (csv_with("nh.csv", lambda t: None, header=False), {"target": "label"},
                             r"no header row, so it has no column 'label'"),
        "single_class": (npz("one.npz", x=x, y=np.full(20, 7)), {}, r"a single class \(7\)"),
        "class_too_small": (csv_with("small.csv", cell(5, 3, "rare")), {},
                            r"class 'rare' in .* has 1 example; a stratified test split needs at least 2"),
        "lengths": (npz("lengths.npz", x=x, y=y[:15]), {}, r"20 examples in x but 15 labels in y"),
        "unreadable_image": (bad_image, {}, r"image .*1\.png cannot be read"),
        "image_sizes": (sizes, {}, r"differ in size: .* 1\.png is 5x7"),
        "train_without_test": (train_only, {}, r"has a train/ folder but no test/ folder"),
        "pickled": (npz("pickled.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=y), {},
                    r"holds a pickled object; .* without pickle"),
        "missing_file": (root / "nowhere.csv", {}, r"nowhere\.csv does not exist"),
        "unknown_name": ("no_such_dataset", {}, r"unknown data 'no_such_dataset': not a built-in dataset"),
        "unknown_suffix": (root / "d.json", {}, r"is a '\.json' file; qcreep reads \.npz, \.csv"),
        "corrupt_npz": (root / "corrupt.npz", {}, r"corrupt\.npz is not a readable \.npz file"),
        "not_a_zip": (root / "text.npz", {}, r"text\.npz is not an \.npz file \(not a zip archive\)"),
        "npz_names": (npz("names.npz", features=x, labels=y), {}, r"holds arrays features, labels; .* x and y"),
        "empty_csv": (root / "empty.csv", {}, r"empty\.csv is empty"),
        "non_numeric": (csv_with("word.csv", cell(2, 0, "twelve")), {},
                        r"line 4, column 'a' holds 'twelve', not a number"),
        "empty_cell": (csv_with("hole.csv", cell(9, 2, " ")), {}, r"line 11, column 'c' is empty"),
        "label_not_last": (write_csv(root / "first.csv", [["yes" if i % 2 else "no", *r] for i, r in enumerate(x)],
                                     ["label", "a", "b", "c"]), {},
                           r"column 'label' holds .*, not a number; .*give --target"),
        "complex": (npz("complex.npz", x=x + 1j, y=y), {}, r"complex numbers"),
        "test_classes": (root / "train.csv", {"test_data": root / "other_classes.csv"},
                         r"class\(es\) 'perhaps' that no training example has"),
        "test_shape": (root / "train.csv", {"test_data": root / "narrow.csv"},
                       r"test examples have shape \(1,\), training examples \(3,\)"),
        "test_missing": (root / "train.csv", {"test_data": root / "absent.csv"},
                         r"test data .*absent\.csv does not exist"),
    }


BAD_DATA_CASES = [
    "nan", "inf", "ragged", "target_name", "target_index", "target_negative", "target_no_header", "single_class",
    "class_too_small", "lengths", "unreadable_image", "image_sizes", "train_without_test", "pickled", "missing_file",
    "unknown_name", "unknown_suffix", "corrupt_npz", "not_a_zip", "npz_names", "empty_csv", "non_numeric",
    "empty_cell", "label_not_last", "complex", "test_classes", "test_shape", "test_missing"]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    return _bad_data(tmp_path_factory.mktemp("bad_data"))


def test_bad_data_cases_are_all_listed(bad_data):
    assert sorted(bad_data) == sorted(BAD_DATA_CASES)


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message and message.strip() == message, message
    return message


@pytest.mark.parametrize("case", BAD_DATA_CASES)
def test_bad_data_is_one_error_line(bad_data, case):
    spec, options, pattern = bad_data[case]
    with pytest.raises(DataError, match=pattern) as caught:
        load_data(spec, **options)
    _one_line(caught.value)


@pytest.mark.parametrize("data, pattern", [
    (([[1.0, 2.0], [3.0]] * 10, [0, 1] * 10), r"ragged rows"),
    ((np.zeros((10, 2)), np.array([0, 1] * 5), np.zeros((4, 2)), np.array([0, 1, 0, 1, 0])),
     r"4 examples in x but 5 labels"),
    ((np.zeros(10), np.array([0, 1] * 5)), r"must be \(N, F\) vectors"),
    ((np.zeros((10, 1, 1, 1, 1)), np.array([0, 1] * 5)), r"got shape \(10, 1, 1, 1, 1\)"),
    ((np.zeros((10, 2)), np.array([0.0, np.nan] * 5)), r"labels .* contain NaN or inf"),
    ((np.zeros((10, 2)), np.zeros((10, 2))), r"one value per example"),
    ((TensorDataset(torch.zeros(4, 2)), TensorDataset(torch.zeros(4, 2))), r"items must be \(x, y\) pairs"),
    (42, r"data must be a built-in name, a path"),
])
def test_bad_python_data_is_one_error_line(data, pattern):
    with pytest.raises(QcreepError, match=pattern) as caught:
        load_data(data)
    _one_line(caught.value)


def test_bad_options_are_errors(tmp_path):
    x, y = features(20), np.arange(20) % 2
    with pytest.raises(QcreepError, match=r"test_fraction must be a number in \(0, 1\), got 1\.5"):
        load_data((x, y), test_fraction=1.5)
    with pytest.raises(QcreepError, match=r"brings its own test split"):
        load_data("digits", test_data=labelled_csv(tmp_path / "t.csv"))
    path = tmp_path / "both.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(QcreepError, match=r"already holds a test split"):
        load_data(path, test_data=labelled_csv(tmp_path / "t.csv"))
    with pytest.raises(QcreepError, match=r"holds a train and a test split; give one split"):
        load_data(labelled_csv(tmp_path / "t.csv"), test_data=path)


def _cli_args(case: str, bad: dict, models: Path, out: str = "out") -> list[str]:
    """``qcreep run`` arguments for a bad-data case, with a good model."""
    spec, options, _ = bad[case]
    args = ["run", "--data", str(spec), "--model", f"{models}:mlp", "--out", out, *TINY]
    if "target" in options:
        args += ["--target", str(options["target"])]
    if "test_data" in options:
        args += ["--test-data", str(options["test_data"])]
    return args


def assert_cli_error(rc: int, err: str, out_dir: Path, pattern: str) -> None:
    """Exit code 2, exactly one ``qcreep: error:`` line on stderr, no traceback, ``--out`` not created."""
    assert "Traceback" not in err, err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qcreep: error: "), err
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    assert not out_dir.exists(), f"{out_dir} was created"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "models.py"
    path.write_text(MODELS)
    return path


@pytest.mark.parametrize("case", BAD_DATA_CASES)
def test_bad_data_from_the_cli(bad_data, models, case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(_cli_args(case, bad_data, models))
    assert_cli_error(rc, capsys.readouterr().err, tmp_path / "out", bad_data[case][2])


# ------------------------------------------------------------------------------------------------
# bad model specs


BAD_MODELS = {
    "module_not_found": ("no_such_package_xyz.nets:Net", r"no module named 'no_such_package_xyz'"),
    "file_not_found": ("nets/missing.py:Net", r"file nets/missing\.py not found"),
    "attribute_not_found": ("{models}:Transformer", r"has no attribute 'Transformer' \(it has: .*TinyCNN"),
    "not_callable": ("{models}:NUMBER", r"'NUMBER' is of type int, not an nn\.Module class or a factory"),
    "instance": ("{models}:INSTANCE", r"'INSTANCE' is an nn\.Module instance \(Linear\); give its class"),
    "factory_raises": ("{models}:raises", r"calling it with input_shape=\(3,\) raised RuntimeError: no GPU here"),
    "not_a_module": ("{models}:not_a_module", r"returned an object of type int, not an nn\.Module"),
    "malformed": ("models.py", r"'models\.py' is not 'package\.module:attr' or 'path/file\.py:attr'"),
    "malformed_attr": ("{models}:1net", r"is not 'package\.module:attr'"),
    "syntax_error": ("{broken}:Net", r"importing .*broken\.py raised SyntaxError"),
    "no_slots": ("{models}:no_slots", r"has no slot that a registered layer can fill \(it has no nn\.Linear or "
                                      r"nn\.Conv2d\)"),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "broken.py"
    path.write_text("def Net(:\n")
    return path


def _model_spec(case, models, broken) -> str:
    return BAD_MODELS[case][0].format(models=models, broken=broken)


@pytest.mark.parametrize("case", [c for c in BAD_MODELS if c != "no_slots"])
def test_bad_model_spec_is_one_error_line(case, models, broken):
    with pytest.raises(ConfigError, match=BAD_MODELS[case][1]) as caught:
        make_model(_model_spec(case, models, broken), (3,), 2, seed=0)
    _one_line(caught.value)


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_from_the_cli(case, models, broken, bad_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = bad_data["test_missing"][0]  # train.csv: a good file
    rc = main(["run", "--data", str(data), "--model", _model_spec(case, models, broken), "--out", "out", *TINY])
    assert_cli_error(rc, capsys.readouterr().err, tmp_path / "out", BAD_MODELS[case][1])


def test_module_spec_is_found_in_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "my_own_nets_for_qcreep.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_own_nets_for_qcreep", raising=False)
    model = make_model("my_own_nets_for_qcreep:mlp", (3,), 2, seed=0)
    assert isinstance(model, torch.nn.Sequential)
    sys.modules.pop("my_own_nets_for_qcreep", None)


# ------------------------------------------------------------------------------------------------
# the real console script: every format at a tiny budget, and a bad input of each kind


def _format_runs(root: Path, models: Path) -> dict:
    """``{run: argv}``: every format at a tiny budget, several formats to one run where the options allow."""
    x, y = features(40), np.arange(40) % 2
    np.savez(root / "tt.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    np.savez(root / "xy.npz", x=x, y=np.where(y == 1, "pos", "neg"))
    np.savez(root / "img.npz", x=np.random.default_rng(1).integers(0, 256, (40, 6, 6), dtype=np.uint8), y=y)
    rows = [["good" if i % 2 else "bad", *r] for i, r in enumerate(features(40))]
    write_csv(root / "header.csv", rows, ["verdict", "a", "b", "c"])
    write_csv(root / "plain.csv", [[*r, 1 if i % 2 else -1] for i, r in enumerate(features(40))])
    labelled_csv(root / "train.csv", n=30)
    labelled_csv(root / "test.csv", n=10)
    image_folder(root / "tt" / "train", per_class=6)
    image_folder(root / "tt" / "test", per_class=3)
    image_folder(root / "one", classes=("a", "b", "c"), per_class=10)
    mlp, cnn = f"{models}:mlp", f"{models}:TinyCNN"
    ladder = ["--seeds", "1", "--epochs", "1", "--no-tune", "--rungs", "cumulative", "--n-reps", "1", "--threads", "1",
              "--no-progress"]
    return {
        # the MLP flattens images, so one run takes npz arrays, npz images and both kinds of image folder
        "mixed": ["--data", "tt.npz", "xy.npz", "img.npz", "tt", "one", "--test-fraction", "0.25", "--model", mlp,
                  *TINY],
        "header": ["--data", "header.csv", "--target", "verdict", "--model", mlp, *TINY],
        "plain": ["--data", "plain.csv", "--model", mlp, "--no-standardize", *TINY],
        "test_data": ["--data", "train.csv", "--test-data", "test.csv", "--model", mlp, *TINY],
        "ladder": ["--data", "img.npz", "--model", cnn, *ladder],
    }


FORMATS = {  # data spec: (run, kind, classes, records)
    "tt.npz": ("mixed", "npz", [0, 1], 1),
    "xy.npz": ("mixed", "npz", ["neg", "pos"], 1),
    "img.npz": ("mixed", "npz", [0, 1], 1),
    "tt": ("mixed", "folder", ["cat", "dog"], 1),
    "one": ("mixed", "folder", ["a", "b", "c"], 1),
    "header.csv": ("header", "csv", ["bad", "good"], 1),
    "plain.csv": ("plain", "csv", [-1, 1], 1),
    "train.csv": ("test_data", "csv", ["no", "yes"], 1),
}


@pytest.fixture(scope="module")
def console(tmp_path_factory, models, bad_data):
    """Every subprocess of this module, PARALLEL at a time: the format runs, a bad file and a bad model."""
    root = tmp_path_factory.mktemp("console")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    commands = {name: ["run", *argv, "--out", f"out_{name}"] for name, argv in _format_runs(root, models).items()}
    commands["bad_pickled"] = _cli_args("pickled", bad_data, models, out="out_bad_pickled")
    commands["bad_model"] = ["run", "--data", str(bad_data["test_missing"][0]), "--model",
                             _model_spec("factory_raises", models, "-"), "--out", "out_bad_model", *TINY]

    def run(argv):
        return subprocess.run([*QCREEP, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(run, argv) for name, argv in commands.items()}
        return root, {name: f.result() for name, f in futures.items()}


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


@pytest.mark.parametrize("spec", list(FORMATS))
def test_console_script_trains_on_each_format(console, spec):
    root, results = console
    run, kind, classes, n_records = FORMATS[spec]
    result = results[run]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "final test acc" in result.stdout
    out = root / f"out_{run}"
    records = [r for r in _records(out) if r["data"]["spec"] == str(root / spec)]
    assert len(records) == n_records
    assert all(r["status"] == "complete" for r in records)
    assert all((r["data"]["kind"], r["data"]["classes"]) == (kind, classes) for r in records)
    assert (out / "report.md").is_file()


def test_console_script_ladder_has_every_rung_and_twin(console):
    root, results = console
    assert results["ladder"].returncode == 0, results["ladder"].stderr
    records = _records(root / "out_ladder")
    labels = sorted(r["label"] for r in records)
    assert labels == ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin"], labels
    assert all(r["status"] == "complete" for r in records)
    assert {r["twin_of"] for r in records if r["label"].endswith("twin")} == {"level 1", "level 2"}


def test_console_script_records_the_options(console):
    root, results = console
    (plain,) = _records(root / "out_plain")
    assert plain["config"]["standardize"] is False
    (header,) = _records(root / "out_header")
    assert header["config"]["target"] == "verdict" and header["data"]["columns"] == ["a", "b", "c"]
    (split,) = _records(root / "out_test_data")
    assert split["config"]["test_data"] == str(root / "test.csv")
    assert split["data"]["test_spec"] == str(root / "test.csv")


@pytest.mark.parametrize("case, pattern", [("bad_pickled", r"holds a pickled object"),
                                           ("bad_model", BAD_MODELS["factory_raises"][1])])
def test_console_script_bad_input_is_one_line(console, case, pattern):
    root, results = console
    result = results[case]
    assert_cli_error(result.returncode, result.stderr, root / f"out_{case}", pattern)
