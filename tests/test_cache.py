"""The on-disk result cache: keyed by settings and data, written atomically, read back as stored."""
from __future__ import annotations

import numpy as np

from onnxlab.cache import RESULT_FILE, arrays_digest, cache_entry, settings_key


def test_store_then_load_returns_the_result(tmp_path):
    entry = cache_entry(tmp_path, "kind", "LeNet-5 · LIF", {"epochs": 3, "lr": 0.001})
    assert entry.load() is None
    entry.store({"error": np.float32(0.25), "by_step": np.array([0.5, 0.25]), "name": "x"})
    again = cache_entry(tmp_path, "kind", "LeNet-5 · LIF", {"lr": 0.001, "epochs": 3})  # key order is irrelevant
    assert again.folder == entry.folder and entry.folder.name.startswith("LeNet-5-LIF-")
    assert again.load() == {"error": 0.25, "by_step": [0.5, 0.25], "name": "x"}
    assert (entry.folder / "settings.json").is_file()


def test_any_changed_setting_is_another_entry(tmp_path):
    base = {"epochs": 3, "recipe": {"neuron": "LIF", "seed": 0}}
    changed = {"epochs": 3, "recipe": {"neuron": "LIF", "seed": 1}}
    assert settings_key(base) != settings_key(changed)
    cache_entry(tmp_path, "kind", "a", base).store({"v": 1})
    assert cache_entry(tmp_path, "kind", "a", changed).load() is None


def test_an_interrupted_store_leaves_no_result(tmp_path):
    entry = cache_entry(tmp_path, "kind", "a", {"x": 1})
    entry.workdir().joinpath("model.onnx").write_bytes(b"half")  # the computation wrote files, then died
    (entry.folder / (RESULT_FILE + ".partial")).write_text("{")
    assert entry.load() is None


def test_arrays_digest_sees_values_shapes_and_dtypes():
    a = np.arange(6, dtype=np.float32)
    assert arrays_digest(a) == arrays_digest(a.copy())
    assert arrays_digest(a) != arrays_digest(a.reshape(2, 3))
    assert arrays_digest(a) != arrays_digest(a.astype(np.float64))
    b = a.copy(); b[3] += 1
    assert arrays_digest(a) != arrays_digest(b)
