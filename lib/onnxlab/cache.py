"""Results of long computations (a trained network and its scores) kept on disk, keyed by their settings.

A notebook cell that trains for minutes stores its result under ``<root>/<kind>/<label>-<key>/``: ``result.json``
(what the computation returned), ``settings.json`` (what it was computed from) and any files it wrote there (the
trained model). ``key`` is a digest of the settings, so changing any setting computes anew and a rerun with the same
settings reads the stored result; an interrupted run resumes from the entries already complete (``result.json`` is
written last, atomically).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

#: Bump when the meaning of a stored result changes (code, not settings), so old entries are not read.
CACHE_FORMAT = 1
#: Hex digits of the settings digest in a folder name.
KEY_DIGITS = 16
RESULT_FILE = "result.json"
SETTINGS_FILE = "settings.json"


def _canonical(settings: Mapping[str, Any]) -> str:
    return json.dumps({"cache_format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)


def settings_key(settings: Mapping[str, Any]) -> str:
    """Digest of ``settings`` (JSON-able values; others by ``str``), ``KEY_DIGITS`` hex digits."""
    return hashlib.sha256(_canonical(settings).encode()).hexdigest()[:KEY_DIGITS]


def arrays_digest(*arrays: np.ndarray) -> str:
    """Digest of the shapes, dtypes and bytes of ``arrays`` (to key a result by the data it was computed on)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:KEY_DIGITS]


@dataclass(frozen=True)
class CacheEntry:
    """One cached computation: its folder, and its result once stored."""

    folder: Path
    settings: Mapping[str, Any]

    @property
    def result_path(self) -> Path:
        return self.folder / RESULT_FILE

    def workdir(self) -> Path:
        """The entry's folder, created if needed, for files the computation writes beside its result."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def load(self) -> dict[str, Any] | None:
        """The stored result, or None if this computation has not completed."""
        if not self.result_path.is_file():
            return None
        return json.loads(self.result_path.read_text())

    def store(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``result`` (JSON-able) and the settings; ``result.json`` last and atomically. Returns ``result``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / SETTINGS_FILE).write_text(_canonical(self.settings))
        partial = self.result_path.with_suffix(".partial")
        partial.write_text(json.dumps(dict(result), indent=1, default=_plain))
        os.replace(partial, self.result_path)
        return dict(result)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a cache result")


def cache_entry(root: str | os.PathLike, kind: str, label: str, settings: Mapping[str, Any]) -> CacheEntry:
    """The entry for ``settings`` under ``root/kind/``; ``label`` (e.g. ``"LeNet-5-LIF"``) names its folder."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    return CacheEntry(Path(root) / kind / f"{slug}-{settings_key(settings)}", dict(settings))
