"""Bench: interleaving, medians and ratios, checked on workloads of known cost with a fake clock."""
import numpy as np
import pytest

from onnxlab.bench import compare


class FakeClock:
    """A clock that only moves when a workload says so: timings are exact and repeatable."""

    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self):
        return self.now

    def workload(self, name, seconds):
        def run():
            self.now += seconds
            self.log.append(name)
        return run


def test_ratio_of_two_known_workloads_is_exact():
    clock = FakeClock()
    result = compare({"slow": clock.workload("slow", 0.003), "fast": clock.workload("fast", 0.001)},
                     number=10, repeats=5, warmup=2, clock=clock)
    assert result["slow"].median == pytest.approx(0.03)
    assert result["fast"].per_call == pytest.approx(0.001)
    assert result.ratio("slow", "fast") == pytest.approx(3.0)
    np.testing.assert_allclose(result.paired_ratios("slow", "fast"), 3.0)


def test_median_ignores_one_outlier():
    clock = FakeClock()
    costs = iter([1.0, 1.0, 50.0, 1.0, 1.0])  # one call per repeat, the third one slow

    def jittery():
        clock.now += next(costs)

    result = compare({"a": jittery}, number=1, repeats=5, warmup=0, clock=clock)
    assert result["a"].median == pytest.approx(1.0)
    assert result["a"].samples.max() == pytest.approx(50.0)


def test_candidates_are_interleaved_and_rotated():
    clock = FakeClock()
    compare({"a": clock.workload("a", 1), "b": clock.workload("b", 1), "c": clock.workload("c", 1)},
            number=1, repeats=3, warmup=1, clock=clock)
    warmup, timed = clock.log[:3], clock.log[3:]
    assert warmup == ["a", "b", "c"]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_counts_calls():
    clock = FakeClock()
    compare({"a": clock.workload("a", 1)}, number=7, repeats=3, warmup=2, clock=clock)
    assert len(clock.log) == 2 + 7 * 3


def test_min_seconds_adds_repeats_until_every_candidate_has_its_time():
    """1 s and 0.25 s workloads, 3 repeats at least, 2 s each: the fast one needs 8 repeats (both run them);
    max_repeats caps the count; the paired ratios' quartiles are the exact ratio."""
    clock = FakeClock()
    result = compare({"slow": clock.workload("slow", 1.0), "fast": clock.workload("fast", 0.25)},
                     repeats=3, warmup=0, min_seconds=2.0, clock=clock)
    assert len(result["slow"].samples) == len(result["fast"].samples) == 8
    assert result.paired_ratio_quartiles("fast", "slow") == pytest.approx((0.25, 0.25, 0.25))
    capped = compare({"fast": clock.workload("fast", 0.25)}, repeats=3, warmup=0, min_seconds=100.0, max_repeats=5,
                     clock=clock)
    assert len(capped["fast"].samples) == 5


def test_paired_ratio_quartiles_show_the_spread_of_repeats():
    """b's cost over a's in four repeats: 1, 2, 1, 0.5 -> quartiles 0.875, 1.0, 1.25 (linear interpolation)."""
    clock = FakeClock()
    costs = {"a": iter([1.0, 1.0, 1.0, 1.0]), "b": iter([1.0, 2.0, 1.0, 0.5])}

    def workload(name):
        def run():
            clock.now += next(costs[name])
        return run

    result = compare({"a": workload("a"), "b": workload("b")}, repeats=4, warmup=0, clock=clock)
    np.testing.assert_allclose(result.paired_ratios("b", "a"), [1.0, 2.0, 1.0, 0.5])
    assert result.paired_ratio_quartiles("b", "a") == pytest.approx((0.875, 1.0, 1.25))


@pytest.mark.parametrize("kwargs", [dict(number=0), dict(repeats=0), dict(warmup=-1), dict(min_seconds=-1.0),
                                    dict(repeats=5, max_repeats=4)])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError, match="need number >= 1"):
        compare({"a": lambda: None}, **kwargs)


def test_no_candidates_is_rejected():
    with pytest.raises(ValueError, match="no candidates"):
        compare({})


def test_real_clock_measures_real_work():
    """With the real clock, a workload doing 4x the work measures slower than 1x (ratio in a wide band)."""
    data = np.random.default_rng(0).random(200_000)
    result = compare({"x4": lambda: [np.sort(data) for _ in range(4)], "x1": lambda: np.sort(data)},
                     number=3, repeats=5, warmup=1)
    assert 1.5 < result.ratio("x4", "x1") < 10


def test_cpu_time_is_measured_apart_from_wall_time():
    """A candidate that waits (wall time, no CPU) and one that works: the CPU clock tells them apart."""
    wall, cpu = FakeClock(), FakeClock()

    def waits():
        wall.now += 2.0

    def works():
        wall.now += 1.0
        cpu.now += 1.0

    result = compare({"waits": waits, "works": works}, repeats=3, warmup=0, clock=wall, cpu_clock=cpu)
    assert result["waits"].median == pytest.approx(2.0) and result["waits"].cpu_median == pytest.approx(0.0)
    assert result["works"].cpu_median == pytest.approx(1.0)
    assert result.ratio("waits", "works") == pytest.approx(2.0)
    np.testing.assert_allclose(result["works"].cpu_samples, 1.0)
    assert result.cpu_ratio("works", "works") == pytest.approx(1.0)


def test_real_cpu_clock_sees_work_but_not_sleep():
    import time

    data = np.random.default_rng(0).random(200_000)
    result = compare({"sleeps": lambda: time.sleep(0.05), "sorts": lambda: [np.sort(data) for _ in range(5)]},
                     repeats=3, warmup=0)
    assert result["sleeps"].median >= 0.05 and result["sleeps"].cpu_median < 0.01
    assert result["sorts"].cpu_median > 0.02  # five sorts of 200 000 values: tens of CPU milliseconds
