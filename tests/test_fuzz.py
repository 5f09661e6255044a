"""Fuzz the loader and classifier: mutated model bytes give a verdict or an OnnxlabError, never anything else.

CI runs FUZZ_CASES cases (default 200); ``ONNXLAB_FUZZ_CASES=20000 make test`` runs more on demand.
"""
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxlab.classify import KINDS
from onnxlab.fuzz import MUTATIONS, check_bytes, fuzz, mutate
from onnxlab.snn import to_snn
from tests.onnx_models import branching, legacy_model, mlp

FUZZ_CASES = int(os.environ.get("ONNXLAB_FUZZ_CASES", "200"))
SEEDS = {
    "dnn": mlp().SerializeToString(),
    "cnn": branching().SerializeToString(),
    "snn": to_snn(mlp(), "LIF", params={"amplitude": 0.01}).SerializeToString(),
    "legacy": legacy_model().SerializeToString(),
}


@settings(max_examples=FUZZ_CASES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(SEEDS)), kind=st.sampled_from(sorted(MUTATIONS)),
       position=st.floats(0, 1), payload=st.binary(min_size=1, max_size=32))
def test_mutated_models_never_crash_the_loader_or_classifier(seed, kind, position, payload):
    assert check_bytes(mutate(SEEDS[seed], kind, position, payload)) in (*KINDS, "rejected")


def test_unmutated_seeds_are_classified():
    assert {name: check_bytes(data) for name, data in SEEDS.items()} == {
        "dnn": "DL", "cnn": "DL", "snn": "SNN", "legacy": "SNN"}


def test_fuzz_report_counts_every_case():
    report = fuzz(SEEDS, 50, seed=1)
    assert report.cases == 50 == sum(report.outcomes.values())
    assert report.crashes == [] and report.outcomes["rejected"] > 0
