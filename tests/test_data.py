"""Tests for qcreep.data: spec table, IDX / CIFAR readers, preprocessing, errors.

Everything runs offline. Tests marked ``realdata`` read the MNIST / FashionMNIST files in
``../shared/data`` and skip when they are absent; the rest build small fake files in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import pickle
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from qcreep.data import (
    DATASETS,
    DatasetSpec,
    Split,
    describe_datasets,
    get_spec,
    load_dataset,
    read_cifar_batch,
    read_idx,
    resolve_data_dir,
)
from qcreep.errors import DataError, QcreepError

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _have(folder: str) -> bool:
    raw = REAL_DATA / folder / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return all((raw / n).is_file() or (raw / (n + ".gz")).is_file() for n in names)


# --------------------------------------------------------------------------------------------------
# Fake-file helpers
# --------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_fake_idx(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 5,
                  gz: bool = True):
    """Fake MNIST-layout files; image i is filled with value i (train) or 200 + i (test)."""
    raw = root / folder / "raw"
    tr_img = np.stack([np.full((28, 28), i, np.uint8) for i in range(n_train)])
    tr_img[:, 0, 0] = 255  # one bright corner pixel per image
    tr_lab = (np.arange(n_train) % 10).astype(np.uint8)
    te_img = np.stack([np.full((28, 28), 200 + i, np.uint8) for i in range(n_test)])
    te_lab = ((np.arange(n_test) * 3) % 10).astype(np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", tr_img, gz)
    write_idx(raw / "train-labels-idx1-ubyte", tr_lab, gz)
    write_idx(raw / "t10k-images-idx3-ubyte", te_img, gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", te_lab, gz)
    return tr_img, tr_lab, te_img, te_lab


def cifar_batch(n: int, start_label: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    # Known pattern: red plane = row index * 8 (so it is distinct from green/blue planes).
    img[:, 0] = (np.arange(32, dtype=np.uint8) * 8)[None, :, None]
    img[:, 1] = 7
    img[:, 2] = 250
    labels = [int((start_label + i) % 10) for i in range(n)]
    return {
        b"batch_label": b"fake batch",
        b"labels": labels,
        b"data": img.reshape(n, 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def make_fake_cifar(root: Path, n: int = 20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = cifar_batch(n, start_label=i, seed=i)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = batch
    return batches


# --------------------------------------------------------------------------------------------------
# Spec table
# --------------------------------------------------------------------------------------------------


def test_spec_table_shapes():
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "cifar10"}
    assert DATASETS["mnist"].input_shape == (1, 32, 32)
    assert DATASETS["fashion-mnist"].input_shape == (1, 32, 32)
    assert DATASETS["cifar10"].input_shape == (3, 32, 32)
    assert DATASETS["digits"].input_shape == (1, 12, 12)
    for name, spec in DATASETS.items():
        assert isinstance(spec, DatasetSpec)
        assert spec.name == name
        assert spec.num_classes == 10
        assert spec.mean == (0.5,) * spec.channels and spec.std == (0.5,) * spec.channels
    assert DATASETS["mnist"].files["train_images"] == ("train-images-idx3-ubyte",)
    assert DATASETS["cifar10"].folder == "cifar-10-batches-py"


def test_spec_is_frozen_and_hashable():
    spec = get_spec("mnist")
    with pytest.raises(AttributeError):
        spec.pad = 3  # type: ignore[misc]
    assert hash(spec) == hash(get_spec("MNIST"))


def test_unknown_dataset():
    with pytest.raises(
        QcreepError,
        match=r"^unknown dataset 'x'; valid datasets: cifar10, digits, fashion-mnist, mnist$",
    ):
        get_spec("x")
    with pytest.raises(QcreepError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_describe_datasets():
    rows = describe_datasets()
    assert [r["name"] for r in rows] == ["cifar10", "digits", "fashion-mnist", "mnist"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["mnist"]["input_shape"] == (1, 32, 32)
    assert by_name["mnist"]["classes"] == 10
    assert (by_name["digits"]["train_size"], by_name["digits"]["test_size"]) == (1347, 450)
    assert all(r["description"] for r in rows)


# --------------------------------------------------------------------------------------------------
# Data directory resolution
# --------------------------------------------------------------------------------------------------


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("QCREEP_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"

    monkeypatch.delenv("QCREEP_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "qcreep" / "data"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "qcreep" / "data"
    assert not (tmp_path / "home").exists()  # nothing is created


def test_env_var_is_used_by_load_dataset(monkeypatch, tmp_path):
    make_fake_idx(tmp_path)
    monkeypatch.setenv("QCREEP_DATA", str(tmp_path))
    train, test = load_dataset("mnist", download=False)
    assert train.x.shape == (12, 1, 32, 32) and test.x.shape == (5, 1, 32, 32)


# --------------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fake_idx_load(tmp_path, gz):
    tr_img, tr_lab, te_img, te_lab = make_fake_idx(tmp_path, gz=gz)
    train, test = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert train.x.shape == (12, 1, 32, 32) and train.x.dtype == torch.float32
    assert test.x.shape == (5, 1, 32, 32)
    assert train.y.dtype == torch.int64 and train.y.tolist() == tr_lab.tolist()
    assert test.y.tolist() == te_lab.tolist()
    assert len(train) == 12 and isinstance(train, Split)
    # Values: (v / 255 - 0.5) / 0.5 inside, -1 on the 2-pixel border.
    expected = torch.from_numpy(tr_img.astype(np.float32)).div(255).sub(0.5).div(0.5)
    assert torch.equal(train.x[:, 0, 2:30, 2:30], expected)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(train.x[:, 0][:, border] == -1.0)
    assert train.x[0, 0, 2, 2].item() == 1.0  # the bright corner pixel
    assert test.x[3, 0, 10, 10].item() == pytest.approx((203 / 255 - 0.5) / 0.5)


def test_uncompressed_idx_preferred(tmp_path):
    make_fake_idx(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    labels = np.full(12, 9, np.uint8)
    write_idx(raw / "train-labels-idx1-ubyte", labels, gz=False)
    train, _ = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert train.y.tolist() == [9] * 12


def test_fashion_mnist_uses_own_folder(tmp_path):
    make_fake_idx(tmp_path, folder="FashionMNIST", n_train=7, n_test=3)
    train, test = load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert train.x.shape == (7, 1, 32, 32) and test.x.shape == (3, 1, 32, 32)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=False)
    out = read_idx(path, 0x00000803)
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_truncated_idx(tmp_path):
    make_fake_idx(tmp_path, gz=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    expected = 16 + 12 * 28 * 28
    with pytest.raises(
        DataError,
        match=rf"^IDX file .*train-images-idx3-ubyte is {expected - 100} bytes but its header "
        rf"\(12x28x28\) needs exactly {expected} bytes; the file truncated",
    ):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\x00")
    with pytest.raises(DataError, match="has trailing bytes"):
        read_idx(path, 0x00000801)


def test_idx_too_short_for_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match=r"is 6 bytes, too short for its 16-byte header"):
        read_idx(path, 0x00000803)


def test_bad_magic(tmp_path):
    make_fake_idx(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    # A labels file where the images file should be.
    write_idx(raw / "train-images-idx3-ubyte", np.zeros(12, np.uint8), gz=True)
    with pytest.raises(
        DataError,
        match=r"^IDX file .*train-images-idx3-ubyte\.gz has magic number 0x00000801, expected "
        r"0x00000803 \(IDX images: unsigned bytes, 3 dimensions\)",
    ):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"hello world, this is not IDX")
    with pytest.raises(DataError, match=r"magic number 0x68656C6C, expected 0x000008NN"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    make_fake_idx(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match=r"^cannot read gzip file .*t10k-images-idx3-ubyte\.gz: "):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_image_label_count_mismatch(tmp_path):
    make_fake_idx(tmp_path, gz=False)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(11, np.uint8),
              gz=False)
    with pytest.raises(DataError, match=r"has 12 images but .* has 11 labels"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_label_out_of_range(tmp_path):
    make_fake_idx(tmp_path, gz=False)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8),
              gz=False)
    with pytest.raises(DataError, match=r"contains label 10, but mnist labels must lie in 0\.\.9"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_wrong_image_size(tmp_path):
    make_fake_idx(tmp_path, gz=False)
    write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte",
              np.zeros((12, 32, 32), np.uint8), gz=False)
    with pytest.raises(DataError, match=r"are 32x32, expected 28x28 for mnist"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------------------------------
# Missing files / download
# --------------------------------------------------------------------------------------------------


def test_missing_files_no_download(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "--data-dir" in msg and "QCREEP_DATA" in msg and "download=True" in msg


def test_partly_missing_files_are_named(tmp_path):
    make_fake_idx(tmp_path, gz=True)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DataError, match=r"^mnist data not found: missing t10k-labels-idx1-ubyte\[\.gz\] in "
    ):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_missing_cifar_no_download(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "data_batch_1" in msg and "test_batch" in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "\n" not in msg


def test_missing_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes "import torchvision" fail
    with pytest.raises(DataError, match=r"pip install torchvision") as info:
        load_dataset("mnist", data_dir=tmp_path, download=True)
    assert "\n" not in str(info.value)


def test_download_via_torchvision(tmp_path, monkeypatch):
    """With download=True the torchvision class is asked to fetch; our reader reads the files."""
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            if not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
                make_fake_idx(Path(root), gz=True)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = FakeMNIST
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    train, test = load_dataset("mnist", data_dir=tmp_path, download=True)
    assert calls and all(c[0] == str(tmp_path) and c[2] is True for c in calls)
    assert train.x.shape == (12, 1, 32, 32) and test.x.shape == (5, 1, 32, 32)


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    class FailingMNIST:
        def __init__(self, root, train, download):
            raise RuntimeError("no network\nat all")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = FailingMNIST
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    with pytest.raises(DataError, match=r"^downloading mnist with torchvision into .* failed "
                                        r"\(RuntimeError: no network at all\)") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------------


def test_fake_cifar_load(tmp_path):
    batches = make_fake_cifar(tmp_path, n=20)
    train, test = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert train.x.shape == (100, 3, 32, 32) and train.x.dtype == torch.float32
    assert test.x.shape == (20, 3, 32, 32)
    expected_train = [lab for k in range(1, 6) for lab in batches[f"data_batch_{k}"][b"labels"]]
    assert train.y.tolist() == expected_train
    assert test.y.tolist() == batches["test_batch"][b"labels"]
    assert train.y.dtype == torch.int64
    # Channel order: the red-plane row pattern lands in channel 0, green 7 in 1, blue 250 in 2.
    rows = (torch.arange(32, dtype=torch.float32) * 8 / 255 - 0.5) / 0.5
    assert torch.equal(train.x[:, 0], rows.view(1, 32, 1).expand(100, 32, 32))
    assert torch.all(train.x[:, 1] == (7 / 255 - 0.5) / 0.5)
    assert torch.all(train.x[:, 2] == (250 / 255 - 0.5) / 0.5)
    assert train.x.min() >= -1 and train.x.max() <= 1


def test_read_cifar_batch_direct(tmp_path):
    batch = cifar_batch(4, 0, seed=3)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=4))
    images, labels = read_cifar_batch(path)
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(4, 3072), batch[b"data"])
    assert labels.tolist() == [0, 1, 2, 3]


def test_cifar_wrong_keys(tmp_path):
    make_fake_cifar(tmp_path, n=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(pickle.dumps({b"images": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(
        DataError,
        match=r"^CIFAR-10 batch .*data_batch_3 must be a dict with keys b'data' and b'labels', "
        r"found \[\"b'images'\", \"b'labels'\"\]",
    ):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_cifar_wrong_shape(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=re.escape("b'data' is a uint8 array of shape (2, 3000), "
                                                  "expected a uint8 array of shape (N, 3072)")):
        read_cifar_batch(path)


def test_cifar_label_count_mismatch(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DataError, match=r"b'labels' must be 2 integers"):
        read_cifar_batch(path)


def test_cifar_corrupt_pickle(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(cifar_batch(2, 0, 0))[:500])
    with pytest.raises(DataError, match=r"^cannot unpickle CIFAR-10 batch .*; the file is corrupt"):
        read_cifar_batch(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        read_cifar_batch(path)


# --------------------------------------------------------------------------------------------------
# Subsets
# --------------------------------------------------------------------------------------------------


def test_max_train_max_test_subset(tmp_path):
    make_fake_idx(tmp_path)
    full_train, full_test = load_dataset("mnist", data_dir=tmp_path, download=False)
    train, test = load_dataset("mnist", data_dir=tmp_path, max_train=4, max_test=2,
                               download=False)
    assert train.x.shape[0] == 4 and test.x.shape[0] == 2
    assert torch.equal(train.x, full_train.x[:4]) and torch.equal(train.y, full_train.y[:4])
    assert torch.equal(test.x, full_test.x[:2]) and torch.equal(test.y, full_test.y[:2])
    again, _ = load_dataset("mnist", data_dir=tmp_path, max_train=4, max_test=2, download=False)
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)
    big, big_test = load_dataset("mnist", data_dir=tmp_path, max_train=10**6, max_test=10**6,
                                 download=False)
    assert len(big) == 12 and len(big_test) == 5
    np_int, _ = load_dataset("mnist", data_dir=tmp_path, max_train=np.int64(3), download=False)
    assert len(np_int) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_bad_max_values(bad):
    with pytest.raises(QcreepError, match=r"^max_train must be a positive integer or None"):
        load_dataset("digits", max_train=bad)
    with pytest.raises(QcreepError, match=r"^max_test must be a positive integer or None"):
        load_dataset("digits", max_test=bad)


def test_split_length_mismatch():
    with pytest.raises(QcreepError, match="Split has 3 images but 2 labels"):
        Split(torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.int64))


# --------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------


def test_digits():
    train, test = load_dataset("digits", data_dir="/nonexistent/ignored", download=False)
    assert train.x.shape == (1347, 1, 12, 12) and test.x.shape == (450, 1, 12, 12)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.x.min() >= -1 and train.x.max() <= 1
    assert train.x.max() == 1.0  # some pixel is 16/16
    assert torch.all(train.x[:, :, :2] == -1) and torch.all(train.x[:, :, :, -2:] == -1)
    # Stratified split: the class proportions of the full set, pinned so the split cannot drift.
    assert torch.bincount(test.y).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]
    assert train.y[:10].tolist() == [7, 3, 6, 6, 7, 6, 7, 9, 2, 9]
    train2, test2 = load_dataset("digits")
    assert torch.equal(train.x, train2.x) and torch.equal(train.y, train2.y)
    assert torch.equal(test.x, test2.x) and torch.equal(test.y, test2.y)
    small, small_test = load_dataset("digits", max_train=10, max_test=5)
    assert torch.equal(small.x, train.x[:10]) and torch.equal(small_test.y, test.y[:5])


# --------------------------------------------------------------------------------------------------
# Real MNIST / FashionMNIST files
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist():
    if not _have("MNIST"):
        pytest.skip(f"MNIST files not found in {REAL_DATA}")
    return load_dataset("mnist", data_dir=REAL_DATA, download=False)


@pytest.fixture(scope="module")
def real_fashion():
    if not _have("FashionMNIST"):
        pytest.skip(f"FashionMNIST files not found in {REAL_DATA}")
    return load_dataset("fashion-mnist", data_dir=REAL_DATA, download=False)


def _unpadded_mean(x: torch.Tensor) -> float:
    return float((x[:, :, 2:30, 2:30].double() * 0.5 + 0.5).mean())


@pytest.mark.realdata
def test_real_mnist(real_mnist):
    train, test = real_mnist
    assert train.x.shape == (60000, 1, 32, 32) and test.x.shape == (10000, 1, 32, 32)
    assert train.y.shape == (60000,) and test.y.shape == (10000,)
    assert train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(train.y).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]
    assert torch.bincount(test.y).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]
    assert float(train.x.min()) == -1.0 and float(train.x.max()) == 1.0
    for x in (train.x, test.x):
        assert torch.all(x[:, :, :2] == -1) and torch.all(x[:, :, -2:] == -1)
        assert torch.all(x[:, :, :, :2] == -1) and torch.all(x[:, :, :, -2:] == -1)
    assert _unpadded_mean(train.x) == pytest.approx(0.1307, abs=5e-5)


@pytest.mark.realdata
def test_real_mnist_subset_matches_full(real_mnist):
    train, test = load_dataset("mnist", data_dir=REAL_DATA, max_train=100, max_test=50,
                               download=False)
    assert torch.equal(train.x, real_mnist[0].x[:100]) and torch.equal(test.y, real_mnist[1].y[:50])


@pytest.mark.realdata
def test_real_fashion_mnist(real_fashion):
    train, test = real_fashion
    assert train.x.shape == (60000, 1, 32, 32) and test.x.shape == (10000, 1, 32, 32)
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert torch.bincount(test.y).tolist() == [1000] * 10
    assert float(train.x.min()) == -1.0 and float(train.x.max()) == 1.0
    assert torch.all(train.x[:, :, :2] == -1) and torch.all(train.x[:, :, :, -2:] == -1)
    assert _unpadded_mean(train.x) == pytest.approx(0.2860, abs=5e-5)
