"""Benchmarks: warm-up, interleaved repeats, medians, and ratios taken within the same run.

Candidates are timed in turn inside each repeat, with the order rotated from repeat to
repeat, so slow drifts of the machine (turbo, other load) hit every candidate alike and the
A/B ratio is measured under the same conditions. A repeat times ``number`` back-to-back
calls, as the papers report totals (e.g. "seconds to infer the data set 1000 times").
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from onnxlab.errors import InvalidArgument

Clock = Callable[[], float]


@dataclass
class Timing:
    """Repeated timings of one candidate.

    Attributes
    ----------
    samples
        Seconds for ``number`` consecutive calls, one value per repeat; shape (repeats,).
    number
        Calls per repeat.
    cpu_samples
        CPU seconds of this process (all its threads, ``time.process_time``) over the same calls; shape (repeats,).
        On a machine whose cores are shared, wall time also measures what the others did, CPU time only the work
        done here (it includes threads spinning while they wait, e.g. a multi-threaded ONNX Runtime session's).
    """

    name: str
    number: int
    samples: np.ndarray = field(default_factory=lambda: np.empty(0))
    cpu_samples: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def median(self) -> float:
        """Median seconds per repeat (``number`` calls)."""
        return float(np.median(self.samples))

    @property
    def per_call(self) -> float:
        """Median seconds per single call."""
        return self.median / self.number

    @property
    def cpu_median(self) -> float:
        """Median CPU seconds per repeat (``number`` calls)."""
        return float(np.median(self.cpu_samples))

    @property
    def iqr(self) -> tuple[float, float]:
        """25th and 75th percentile of the per-repeat seconds."""
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)


@dataclass
class Comparison:
    """Timings of several candidates measured in one interleaved run."""

    timings: dict[str, Timing]

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def ratio(self, numerator: str, denominator: str) -> float:
        """median(numerator) / median(denominator): > 1 means ``denominator`` is faster."""
        return self.timings[numerator].median / self.timings[denominator].median

    def cpu_ratio(self, numerator: str, denominator: str) -> float:
        """Median of the per-repeat CPU-time ratios numerator/denominator: > 1 means ``denominator`` does less work."""
        return float(np.median(self.timings[numerator].cpu_samples / self.timings[denominator].cpu_samples))

    def paired_ratios(self, numerator: str, denominator: str) -> np.ndarray:
        """Per-repeat ratios numerator/denominator (same repeat, same machine state); shape (repeats,)."""
        return self.timings[numerator].samples / self.timings[denominator].samples

    def paired_ratio_quartiles(self, numerator: str, denominator: str) -> tuple[float, float, float]:
        """25th, 50th and 75th percentile of `paired_ratios`: the median ratio and how far repeats spread around
        it (where the interval holds 1, the two are not told apart by this run)."""
        q1, median, q3 = np.percentile(self.paired_ratios(numerator, denominator), [25, 50, 75])
        return float(q1), float(median), float(q3)


def in_turn(names: list[str], repeat: int) -> list[str]:
    """``names`` rotated by ``repeat``: the order candidates take their turns in that repeat, so that no candidate
    always goes first."""
    shift = repeat % len(names)
    return names[shift:] + names[:shift]


#: Most timed repeats per candidate `compare` runs to fill ``min_seconds``.
MAX_REPEATS = 200


def compare(candidates: Mapping[str, Callable[[], object]], *, number: int = 1, repeats: int = 5,
            warmup: int = 1, min_seconds: float = 0.0, max_repeats: int = MAX_REPEATS,
            clock: Clock = time.perf_counter, cpu_clock: Clock = time.process_time) -> Comparison:
    """Time each candidate ``repeats`` times (``number`` calls each), interleaved; more where ``min_seconds`` asks.

    Parameters
    ----------
    candidates
        Name -> zero-argument callable doing one inference.
    number
        Calls per timed repeat.
    repeats
        Timed repeats per candidate (at least); report the median.
    min_seconds, max_repeats
        Keep repeating (all candidates, in turn) until every candidate has been timed for ``min_seconds`` in
        total, up to ``max_repeats`` repeats: short calls get many repeats, long ones ``repeats``.
    warmup
        Untimed calls per candidate before timing (session initialisation, graph tracing).
    clock
        Monotonic clock in seconds (injectable for tests).
    cpu_clock
        The process's CPU time in seconds (`Timing.cpu_samples`; injectable for tests).
    """
    if number < 1 or repeats < 1 or warmup < 0 or min_seconds < 0 or max_repeats < repeats:
        raise InvalidArgument(f"need number >= 1, repeats >= 1, warmup >= 0, min_seconds >= 0, max_repeats >= "
                              f"repeats; got {number}, {repeats}, {warmup}, {min_seconds}, {max_repeats}")
    names = list(candidates)
    if not names:
        raise InvalidArgument("no candidates to compare")
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu_samples: dict[str, list[float]] = {name: [] for name in names}

    def more(r: int) -> bool:
        return r < repeats or (r < max_repeats and min(sum(s) for s in samples.values()) < min_seconds)

    r = 0
    while more(r):
        for name in in_turn(names, r):
            fn = candidates[name]
            start, cpu_start = clock(), cpu_clock()
            for _ in range(number):
                fn()
            samples[name].append(clock() - start)
            cpu_samples[name].append(cpu_clock() - cpu_start)
        r += 1
    return Comparison({n: Timing(n, number, np.asarray(samples[n]), np.asarray(cpu_samples[n])) for n in names})
