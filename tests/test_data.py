"""Data: checksums verified, corrupt files detected, sources tried in order with one clear error."""
import shutil

import numpy as np
import pytest

from onnxlab import data
from onnxlab.data import (MNIST_FILES, MnistSource, fetch_mnist, load_mnist, load_tabular, read_idx, verify_mnist,
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

    sources = (MnistSource("failing", failing), MnistSource("corrupt", corrupt), MnistSource("good", good))
    folder = fetch_mnist(tmp_path / "m", sources=sources)
    assert calls == ["failing", "corrupt", "good"]
    verify_mnist(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)  # no staging folders left


def test_when_every_source_fails_the_error_lists_them_and_says_how_to_fix_it(tmp_path):
    def fail(dest):
        raise DataError("boom")

    sources = (data.MNIST_SOURCES[0], MnistSource("network", fail))
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
