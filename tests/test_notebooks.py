"""Notebooks: committed clean, parameterised by every profile, and runnable end to end with the smoke profile."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROFILES = ("smoke", "default", "paper")
def _graph_figures():
    from onnxlab import graph_figures

    return graph_figures


def _snn_simulate():
    import importlib

    return importlib.import_module("onnxlab.snn.simulate")  # the module (onnxlab.snn.simulate is also a function)


def _timed_ratios_within_quartiles(table) -> bool:
    """snn_vs_converter: every timed row's ratio lies between its quartiles, under each timing setting."""
    from onnxlab.snn.converter_compare import TIMING_SETTINGS

    for settings in TIMING_SETTINGS:
        timed = table.dropna(subset=[f"ratio_{settings}"])
        if not timed[f"ratio_{settings}"].between(timed[f"ratio_{settings}_q25"], timed[f"ratio_{settings}_q75"]).all():
            return False
    return True


#: What each notebook's smoke run must produce: its main table's columns (the issue's contract,
#: the same in every profile), invariants that hold whatever the sizes, and the other files.
CONTRACTS = {
    "ml_inference_time": dict(
        columns={"model", "baseline_s", "onnxruntime_s", "speedup", "paper_baseline_s", "paper_onnxruntime_s",
                 "outputs_match"},
        invariant=lambda t: t.outputs_match.all() and (t.speedup > 0).all(),
        tables=["ml_inference_variants"], figures=["ml_inference_time"]),
    "dl_inference_time": dict(
        columns={"model", "baseline_s", "keras_call_s", "onnxruntime_s", "speedup", "paper_baseline_s",
                 "paper_onnxruntime_s", "outputs_match"},
        invariant=lambda t: t.outputs_match.all() and (t.speedup > 0).all(),
        tables=[], figures=["dl_inference_time"]),
    "snn_roundtrip": dict(
        columns={"model", "accuracy_before", "accuracy_after", "max_weight_abs_diff", "paper_accuracy_before",
                 "paper_accuracy_after"},
        invariant=lambda t: (t.max_weight_abs_diff == 0).all() and (t.identical_predictions == 1).all()
        and (t.accuracy_before == t.accuracy_after).all() and (t.training_seeds == 2).all()
        and (t.accuracy_seed_min <= t.accuracy_before).all() and (t.accuracy_before <= t.accuracy_seed_max).all()
        and t.accuracy_after_at_reference_steps.between(0, 1).all() and (t.reference_n_steps < t.n_steps).all(),
        tables=["snn_weight_shapes", "snn_forward", "snn_forward_steps", "snn_engines", "snn_evaluation_speed",
                "snn_spiking_forms"],
        figures=["snn_accuracy_vs_steps", "snn_spike_raster", "snn_engines_accuracy_vs_steps", "snn_forward_steps"],
        # both engines; ONNX Runtime's process loads no framework; its predictions are NengoDL's (the smoke network,
        # trained on 600 images, has near-ties between classes: 2 % may differ by one spike's worth)
        other_tables={"snn_forward_steps": lambda t: (t.groupby("layer_synapse_s").path.apply(set)
                                                      == {"converter", "onnxlab"}).all()
                      and t.filter(regex=r"^accuracy_\d+_steps$").apply(lambda c: c.between(0, 1)).all().all()
                      and "steps_within_1pt_of_keras" in t,
                      # the same network four ways (NengoDL as built before issue 17; today's build with NengoDL's
                      # LIF step and with the XLA one; ONNX Runtime)
                      "snn_evaluation_speed": lambda t: len(t) == 4 and (t.identical_predictions_vs_before >= 0.98).all()
                      and (t.images_per_s > 0).all(),
                      "snn_engines": lambda t: set(t.engine) == {"nengo-dl", "onnxruntime-spiking"}
                      and (t.identical_predictions >= 0.98).all() and (t.installed_mib > 0).all()
                      and t.set_index("engine").frameworks_loaded["onnxruntime-spiking"] == "—"
                      and t.set_index("engine").size_vs_nengodl["onnxruntime-spiking"] > 1,
                      # the Loop is exact whatever ONNX Runtime rewrites; the unrolled graph is without the named ones
                      "snn_spiking_forms": lambda t: len(t) == 6 and (t[(t.form == "loop") | (
                          t.rewrites_left_out == "NchwcTransformer MatMulAddFusion")].max_abs_diff_vs_exact_loop == 0).all()}),
    "model_classification": dict(
        columns={"source", "expected", "models", "ML", "DL", "SNN", "error", "correct", "paper_rule_correct"},
        invariant=lambda t: (t.correct == t.models).all() and (t.error == 0).all(),
        tables=["model_routing", "model_failures", "model_zoo", "bad_input", "loader_fuzz"],
        figures=["model_routing"]),
    "foreign_models": dict(
        columns={"file", "producer", "network", "opset", "ir_version", "external_data", "classify", "onnxruntime",
                 "to_snn", "checker", "nengo_rate", "spiking", "codegen", "round_trip", "all_pass"},
        invariant=lambda t: t.all_pass.all() and set(t.producer) >= {"tf2onnx", "onnx.version_converter",
                                                                      "torch.onnx (torchscript)", "torch.onnx (dynamo)",
                                                                      "snn2onnx"},
        tables=[], figures=["foreign_models"]),
    "activation_error_rates": dict(
        columns={"network", "activation", "spiking", "error_rate", "error_rate_onnxruntime",
                 "error_rate_after_roundtrip", "epochs", "n_steps", "paper_error_rate", "train_seconds"},
        # all 15 cells, every one filled; non-spiking: Keras = ONNX Runtime image by image; spiking pipeline: the
        # round trip changes no parameter and no prediction
        invariant=lambda t: len(t) == 15 and t[["error_rate", "error_rate_onnxruntime", "paper_error_rate",
                                                "train_error_rate_onnxruntime", "epochs"]].notna().all().all()
        and (t.identical_predictions == 1).all()
        and (t[t.nengodl_epochs > 0].max_weight_abs_diff == 0).all()
        and (t[t.nengodl_epochs > 0].error_rate == t[t.nengodl_epochs > 0].error_rate_after_roundtrip).all()
        and (t[t.nengodl_epochs == 0].error_rate == t[t.nengodl_epochs == 0].error_rate_onnxruntime).all(),
        tables=[], figures=["activation_error_rates", "activation_error_rates_lif_steps"]),
    "inference_engines": dict(
        columns={"model", "engine", "precision", "latency_b1_ms", "latency_b1_p90_ms", "throughput_img_s", "gflops",
                 "efficiency_theoretical", "efficiency_measured", "peak_rss_mb", "load_s", "max_abs_diff",
                 "label_agreement"},
        # every fp32 engine gives Keras' outputs; every engine of the lock ran (OpenVINO and TFLite both ways); int8
        # rows carry no efficiency (the fp32 peak does not bound them)
        invariant=lambda t: (t[t.precision == "fp32"].max_abs_diff <= 1e-4).all()
        and {"keras-predict", "keras-tf.function", "onnxruntime", "openvino", "tflite", "tflite-builtin"} <= set(t.engine)
        and t[t.precision == "int8"].efficiency_measured.isna().all()
        and (t[t.precision == "fp32"].efficiency_measured > 0).all(),
        tables=[], figures=["inference_engines_throughput", "inference_engines_efficiency"]),
    "graph_figures": dict(
        columns={"figure", "paper_figure", "panel", "ops", "boxes_drawn", "neuron_ops", "highlighted", "summarized",
                 "files"},
        # every figure drawn; in each ONNX / ONNX-SNN pair the LIF nodes are exactly the highlighted activations;
        # no panel is taller than the summary limit
        invariant=lambda t: set(t.figure) == set(_graph_figures().FIGURES)
        and all((lambda g: g.highlighted.iloc[0] == g.neuron_ops.iloc[1] > 0 == g.neuron_ops.iloc[0])(group)
                for name, group in t.groupby("figure") if _graph_figures().FIGURES[name].pair)
        and (t.boxes_drawn <= _graph_figures().MAX_PANEL_BOXES).all(),
        tables=[], figures=[f"graphs/{name}" for name in _graph_figures().FIGURES]),
    "layer_debugger": dict(
        columns={"model", "layer", "op_type", "local_sqnr_db", "local_cosine", "local_max_abs_error",
                 "output_sqnr_db", "accuracy_alone_int8", "accuracy_all_but", "recovered_points"},
        # a row per quantizable layer of each model (LeNet-5: two convolutions, three dense layers); int8 noise is
        # finite and the outputs still point the same way
        invariant=lambda t: (t.groupby("model").size() == 5).all() and (t.local_cosine > 0.9).all()
        and (t.local_sqnr_db > 0).all() and t.local_sqnr_db.notna().all(),
        tables=["layer_debugger_mixed", "layer_debugger_features"],
        figures=["layer_debugger_sqnr", "layer_debugger_augmentation"]),
    "quantization": dict(
        columns={"model", "variant", "engine", "file_mb", "parameter_mb", "size_ratio", "accuracy",
                 "accuracy_change_pts", "latency_b1_ms", "latency_b64_ms", "speedup_b1", "speedup_b64",
                 "tracemalloc_retained_kb", "peak_rss_mb", "rss_model_share_mb", "load_s", "kernels"},
        # Keras and its ONNX file score alike; every ONNX int8 row runs integer kernels in ONNX Runtime; static int8
        # is at least 3.5x smaller than fp32 (issue 14's goal, a property of the format); the child process's peak
        # exceeds what the model added to it
        invariant=lambda t: all(
            (lambda m: m.accuracy["Keras .h5"] == m.accuracy["ONNX fp32"])(t[t.model == name].set_index("variant"))
            for name in set(t.model))
        and t[t.variant.str.startswith("ONNX ") & (t.variant != "ONNX fp32")].kernels.str.startswith("integer: ").all()
        and (t[t.variant.str.startswith("ONNX static")].size_ratio > 3.5).all()
        and (t.peak_rss_mb > t.rss_model_share_mb).all() and (t.rss_model_share_mb > 0).all(),
        tables=[], figures=["quantization_accuracy_size", "quantization_latency"]),
    "snn_vs_converter": dict(
        columns={"model", "mode", "keras_accuracy", "converter_accuracy", "onnxlab_accuracy", "max_output_diff",
                 "onnxlab_accuracy_min", "onnxlab_accuracy_max", "converter_connections", "onnxlab_connections", "converter_ms_per_image_simulate",
                 "onnxlab_ms_per_image_simulate", "ratio_simulate", "ratio_nengo_dl_defaults",
                 "ratio_simulate_q25", "ratio_simulate_q75", "ratio_nengo_dl_defaults_q25",
                 "ratio_nengo_dl_defaults_q75", "converter_planner_simulate", "onnxlab_planner_simulate"},
        # rate mode: both paths compute the Keras network (float32 rounding apart). Spiking outputs are not held
        # to a tolerance here: summing in another order (channels-last vs -first) can move one spike by a step.
        # Every network was planned by one of the two planners `inference_simulator` chooses from. Each timed
        # ratio lies between its quartiles.
        invariant=lambda t: (t[t["mode"] == "rate"].converter_accuracy == t[t["mode"] == "rate"].onnxlab_accuracy).all()
        and (t[t["mode"] == "rate"].max_output_diff <= 1e-4).all()
        and (t.onnxlab_connections <= t.converter_connections).all()
        and t[["converter_planner_simulate", "onnxlab_planner_simulate"]].isin(
            {_snn_simulate().PLANNER, _snn_simulate().UNMERGED_PLANNER}).all(axis=None)
        and _timed_ratios_within_quartiles(t),
        tables=[], figures=["snn_vs_converter_accuracy", "snn_vs_converter_speed"]),
}
ids = [p.stem for p in NOTEBOOKS]


def _kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "onnxlab" if "onnxlab" in KernelSpecManager().find_kernel_specs() else "python3"


def test_every_notebook_has_a_contract():
    assert {p.stem for p in NOTEBOOKS} == set(CONTRACTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {cell.id} has outputs"
    assert "papermill" not in nb.metadata, f"{path.name} is an executed copy"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_profile_sets_only_declared_parameters(path, profile):
    declared = set(papermill.inspect_notebook(str(path)))
    config = ROOT / "experiments" / profile / f"{path.stem}.yaml"
    assert config.is_file(), f"missing {config}"
    given = set(yaml.safe_load(config.read_text()) or {})
    assert given <= declared, f"{config.name} sets unknown parameters {given - declared}"


def _tree_state(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_smoke_run_writes_its_table(path, tmp_path):
    before = _tree_state(ROOT / "results")
    params = yaml.safe_load((ROOT / "experiments" / "smoke" / f"{path.stem}.yaml").read_text()) or {}
    params.update(profile="smoke", results_dir=str(tmp_path))
    declared = papermill.inspect_notebook(str(path))
    for folder in ("models_dir", "cache_dir"):  # written files stay in the test's folder
        if folder in declared:
            params[folder] = str(tmp_path / folder)
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name=_kernel(),
                               cwd=str(ROOT / "notebooks"), progress_bar=False)
    contract = CONTRACTS[path.stem]
    table = pd.read_csv(tmp_path / "tables" / f"{path.stem}.csv")
    assert contract["columns"] <= set(table.columns)
    assert contract["invariant"](table), table.T
    for name in [path.stem, *contract["tables"]]:
        for ext in ("csv", "md", "json"):
            assert (tmp_path / "tables" / f"{name}.{ext}").is_file(), f"{name}.{ext}"
    for name in contract["figures"]:
        assert (tmp_path / "figures" / f"{name}.png").is_file(), name
    for name, invariant in contract.get("other_tables", {}).items():
        other = pd.read_csv(tmp_path / "tables" / f"{name}.csv")
        assert invariant(other), other.T
    assert _tree_state(ROOT / "results") == before, "a smoke run must not write into results/"
    committed = ROOT / "results" / "tables" / f"{path.stem}.csv"
    if committed.is_file():  # same columns in every profile, so runs can be compared
        assert list(pd.read_csv(committed).columns) == list(table.columns)
