"""The layer debugger in JupyterLab: an ipywidgets panel over `onnxlab.inspect` and `onnxlab.cross_inference`.

Pick a node from the graph order, see its inputs, output and weights (statistics, a histogram, feature maps),
step forward, switch the node between float and int8 (cross inference, when a QDQ model is given), scale its
weights and rerun to see what changed downstream. Everything the panel shows comes from the library's functions,
which notebooks and tests call directly; the panel only wires them to widgets::

    from onnxlab.debugger_panel import DebuggerPanel
    panel = DebuggerPanel("float.onnx", x_test[:64], qdq_model="qdq.onnx")
    panel.widget                                  # display it
"""
from __future__ import annotations

import html
import os
from typing import Any

import numpy as np
import onnx

from onnxlab.inspect import (NodeRecord, TensorStats, diff_traces, edit_weight, layer_weights, node_names,
                             trace)

#: Feature maps drawn for a 4-D output (the first image's first channels).
MAX_FEATURE_MAPS = 8


def _stats_rows(label: str, values: dict[str, Any]) -> list[str]:
    rows = []
    for name, value in values.items():
        stats = TensorStats.of(value)
        if stats is None:
            continue
        rows.append(f"<tr><td>{label}</td><td>{html.escape(name)}</td><td>{'x'.join(map(str, stats.shape))}</td>"
                    f"<td>{stats.min:.4g}</td><td>{stats.max:.4g}</td><td>{stats.mean:.4g}</td>"
                    f"<td>{stats.std:.4g}</td><td>{stats.zero_fraction:.2%}</td></tr>")
    return rows


class DebuggerPanel:
    """An ipywidgets panel for one model and one input batch.

    Parameters
    ----------
    model
        The (float) ONNX model or its path.
    inputs
        Its input batch (N, ...).
    qdq_model
        Optional: its static QDQ quantization, quantized without pre-processing (`cross_inference.quantization_pair`),
        to switch single layers to int8.
    plot
        Draw histograms and feature maps (matplotlib) in the panel's output area.
    """

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, inputs: np.ndarray,
                 qdq_model: onnx.ModelProto | str | os.PathLike | None = None, plot: bool = True):
        import ipywidgets as w

        from onnxlab.formats import as_model

        self.model = as_model(model)
        self.inputs = inputs
        self.plot = plot
        self.names = node_names(self.model)
        self.reference = trace(self.model, inputs)
        self.current = self.reference
        self.cross = None
        if qdq_model is not None:
            from onnxlab.cross_inference import CrossInference

            self.cross = CrossInference(self.model, qdq_model, inputs)
        self.layer = w.Dropdown(options=self.names, value=self.names[0], description="node")
        self.precision = w.ToggleButtons(options=["float", "int8"], value="float", description="run node in",
                                         disabled=self.cross is None)
        self.step_button = w.Button(description="step ▶", tooltip="the next node in graph order")
        self.factor = w.FloatText(value=1.0, description="scale weights", step=0.1)
        self.apply_button = w.Button(description="apply and rerun")
        self.reset_button = w.Button(description="reset")
        self.summary = w.HTML()
        self.output = w.Output()
        self.layer.observe(lambda change: self.show(), names="value")
        self.precision.observe(lambda change: self.show(), names="value")
        self.step_button.on_click(lambda button: self.step())
        self.apply_button.on_click(lambda button: self.apply_edit())
        self.reset_button.on_click(lambda button: self.reset())
        self.widget = w.VBox([w.HBox([self.layer, self.step_button]), self.precision,
                              w.HBox([self.factor, self.apply_button, self.reset_button]), self.summary, self.output])
        self.message = ""
        self.show()

    # ----------------------------------------------------------------- actions

    def step(self) -> None:
        """Select the next node in graph order."""
        index = self.names.index(self.layer.value)
        if index + 1 < len(self.names):
            self.layer.value = self.names[index + 1]

    def record(self) -> NodeRecord:
        """The selected node's record: from the current (possibly edited) float run, or with the node in int8."""
        name = self.layer.value
        if self.precision.value == "int8" and self.cross is not None:
            return self.cross.run({name})[name]
        return self.current[name]

    def apply_edit(self) -> None:
        """Scale the selected node's weights by the factor, rerun, and report what changed."""
        name = self.layer.value
        weights = layer_weights(self.model, name)
        if not weights:
            self.message = f"{name} has no weights to edit"
            return self.show()
        tensor = max(weights, key=lambda t: weights[t].size)  # the kernel, not the bias
        self.edited = edit_weight(self.model, tensor, "scale", factor=float(self.factor.value))
        self.current = trace(self.edited, self.inputs)
        rows = diff_traces(self.reference, self.current)
        changed = [r for r in rows if r["changed"]]
        final = rows[-1]["max_abs_diff"] if rows else 0.0
        self.message = (f"scaled {tensor} by {self.factor.value:g}: {len(changed)} of {len(rows)} node outputs "
                        f"changed; final output max |diff| {final:.4g}")
        self.show()

    def reset(self) -> None:
        """Back to the unedited model."""
        self.current = self.reference
        self.message = "reset to the source model"
        self.show()

    # ----------------------------------------------------------------- display

    def show(self) -> None:
        """Redraw the summary (and plots) for the selected node."""
        record = self.record()
        weights = layer_weights(self.model, record.name)
        activations = {k: v for k, v in record.inputs.items() if k not in weights}
        rows = (_stats_rows("input", activations) + _stats_rows("weight", weights)
                + _stats_rows("output", record.outputs))
        extra = ""
        if self.precision.value == "int8" and self.cross is not None:
            from onnxlab.cross_inference import error_row

            error = error_row(self.reference[record.name].output, record.output)
            extra = (f"<p>int8 vs float at this node: SQNR {error['sqnr_db']:.1f} dB, cosine {error['cosine']:.6f}, "
                     f"max |error| {error['max_abs_error']:.4g}</p>")
        header = (f"<b>{html.escape(record.name)}</b> ({record.op_type}, node {record.index + 1} of "
                  f"{len(self.names)}, {self.precision.value})")
        self.summary.value = (f"<p>{header}</p>{extra}"
                              + (f"<p><i>{html.escape(self.message)}</i></p>" if self.message else "")
                              + "<table><tr><th></th><th>tensor</th><th>shape</th><th>min</th><th>max</th>"
                              "<th>mean</th><th>std</th><th>zeros</th></tr>" + "".join(rows) + "</table>")
        if self.plot:
            self._draw(record, weights)

    def _draw(self, record: NodeRecord, weights: dict[str, np.ndarray]) -> None:
        import matplotlib.pyplot as plt

        output = np.asarray(record.output)
        maps = output.ndim == 4  # (N, C, H, W), as ONNX convolutions write it
        fig, axes = plt.subplots(1, 3 if maps else 2, figsize=(12 if maps else 8, 2.6), squeeze=False)
        axes = axes[0]
        stats = TensorStats.of(output)
        if stats is not None:
            axes[0].stairs(stats.counts, stats.edges, fill=True)
            axes[0].set_title("output histogram", fontsize=8)
        kernel = max(weights.values(), key=np.size) if weights else None
        if kernel is not None:
            kernel_stats = TensorStats.of(kernel)
            axes[1].stairs(kernel_stats.counts, kernel_stats.edges, fill=True, color="tab:orange")
            axes[1].set_title("weight histogram", fontsize=8)
        else:
            axes[1].axis("off")
        if maps:
            channels = output[0, :MAX_FEATURE_MAPS]
            axes[2].imshow(np.concatenate(list(channels), axis=1), cmap="viridis")
            axes[2].set_title(f"first {len(channels)} feature maps, image 0", fontsize=8)
            axes[2].axis("off")
        fig.tight_layout()
        self.figure = fig
        plt.close(fig)  # shown through the output widget only, not again by the notebook's inline backend
        self.output.clear_output(wait=True)
        with self.output:
            from IPython.display import display

            display(fig)
