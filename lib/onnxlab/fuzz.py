"""Fuzzing the loader and classifier with mutated model bytes.

A mutation takes valid ``.onnx`` bytes and damages them one way (`MUTATIONS`); `check_bytes`
then parses, classifies and resource-checks the result. The only acceptable outcomes are a
verdict or an `OnnxlabError`: anything else is a crash (a bug). The tests drive `mutate` with
hypothesis for a bounded number of cases; the model_classification notebook runs `fuzz` for
many more and records the counts.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from onnxlab.errors import OnnxlabError


def _flip(data: bytes, at: int, payload: bytes) -> bytes:
    out = bytearray(data)
    for i, b in enumerate(payload or b"\xff"):
        out[(at + i) % len(out)] ^= b or 0xFF
    return bytes(out)


def _truncate(data: bytes, at: int, payload: bytes) -> bytes:
    return data[:at]


def _insert(data: bytes, at: int, payload: bytes) -> bytes:
    return data[:at] + payload + data[at:]


def _duplicate(data: bytes, at: int, payload: bytes) -> bytes:
    length = 1 + len(payload) * 8
    return data[:at] + data[at:at + length] + data[at:]


def _zero(data: bytes, at: int, payload: bytes) -> bytes:
    length = 1 + len(payload) * 4
    return data[:at] + bytes(min(length, len(data) - at)) + data[at + length:]


#: Mutation name -> fn(data, position, payload) -> damaged bytes.
MUTATIONS: dict[str, Callable[[bytes, int, bytes], bytes]] = {
    "flip": _flip, "truncate": _truncate, "insert": _insert, "duplicate": _duplicate, "zero": _zero,
}


def mutate(data: bytes, kind: str, position: float, payload: bytes) -> bytes:
    """Apply mutation ``kind`` at ``position`` (a fraction of the length, 0..1) with ``payload``."""
    if not data:
        return payload
    at = min(int(position * len(data)), len(data) - 1)
    return MUTATIONS[kind](data, at, payload)


def check_bytes(data: bytes) -> str:
    """Parse, classify and resource-check ``data``: ``"ML"``/``"DL"``/``"SNN"``, or ``"rejected"``.

    Any exception other than `OnnxlabError` propagates: that is a crash.
    """
    from onnxlab.classify import classify
    from onnxlab.formats import parse_model
    from onnxlab.inference import check_resources

    try:
        model = parse_model(data, "fuzzed")
        kind = classify(model).kind
        check_resources(model, None, "fuzzed")
    except OnnxlabError:
        return "rejected"
    return kind


@dataclass
class FuzzReport:
    """Outcome counts by mutation, and the crashes (mutation, exception) if any."""

    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    crashes: list[tuple[str, str]] = field(default_factory=list)


def fuzz(seeds: dict[str, bytes], n_cases: int, *, seed: int = 0, progress: bool = False) -> FuzzReport:
    """Run ``n_cases`` random mutations of the ``seeds`` (name -> valid model bytes) through `check_bytes`."""
    rng = np.random.default_rng(seed)
    names, kinds = sorted(seeds), sorted(MUTATIONS)
    report = FuzzReport()
    cases = range(n_cases)
    if progress:
        from tqdm.auto import tqdm

        cases = tqdm(cases, desc="fuzz", unit="case")
    for _ in cases:
        data = seeds[names[rng.integers(len(names))]]
        kind = kinds[rng.integers(len(kinds))]
        payload = rng.integers(0, 256, rng.integers(1, 17), dtype=np.uint8).tobytes()
        mutated = mutate(data, kind, float(rng.random()), payload)
        try:
            outcome = check_bytes(mutated)
        except Exception as exc:  # noqa: BLE001 - counting crashes is the point
            outcome = "crashed"
            report.crashes.append((kind, f"{type(exc).__name__}: {exc}"[:300]))
        report.cases += 1
        report.outcomes[outcome] += 1
        report.by_mutation.setdefault(kind, Counter())[outcome] += 1
    return report
