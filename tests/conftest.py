"""Shared fixtures. Tests run quietly and deterministically; TensorFlow is imported only by tests that need it."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from onnxlab.data import load_tabular
from onnxlab.reproducibility import quiet

quiet()


@pytest.fixture(scope="session")
def iris():
    return load_tabular("iris", seed=0)


@pytest.fixture(scope="session")
def boston():
    return load_tabular("boston", seed=0)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
