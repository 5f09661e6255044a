"""The papers' graph figures, redrawn: Kim 2021 Figs. 2–4 and Park 2019 Figs. 3-2 and 5-3…5-8.

`FIGURES` lists each figure once (its panels, the paper figure it stands for, whether it pairs ONNX with
ONNX-SNN); `MODELS` says how each panel's ONNX model is made (this project's converters, on untrained or
briefly fitted models: a graph's structure does not depend on its weights); `draw` makes the picture with
`onnxlab.graph_drawing`. ``notebooks/graph_figures.ipynb`` runs them into ``results/figures/graphs/``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from onnxlab.errors import InvalidArgument
from onnxlab.graph_drawing import Drawing, describe, render, summarize, to_dot

#: Boxes a panel may have before its chains are collapsed and it is cropped (VGG16's 40-odd ops fit whole).
MAX_PANEL_BOXES = 48
#: The spiking neuron the thesis' figures put in place of the activations.
PAIR_NEURON = "LIF"


@dataclass(frozen=True)
class ModelRecipe:
    """How to make one panel's ONNX model: ``make(workdir)``, and what the panel's caption says about it."""

    make: Callable[[Path], onnx.ModelProto]
    source: str


def _sklearn(name: str) -> Callable[[Path], onnx.ModelProto]:
    def make(workdir: Path) -> onnx.ModelProto:
        from onnxlab.convert import to_onnx
        from onnxlab.data import load_tabular
        from onnxlab.zoo import ML_MODELS

        spec = ML_MODELS[name]
        split = load_tabular(spec.dataset)
        model = spec.make(0).fit(split.x_train, split.y_train)
        return to_onnx(model, split.x_train[:1].astype(np.float32), name=name)
    return make


def _keras(build: Callable[[], object], name: str) -> Callable[[Path], onnx.ModelProto]:
    def make(workdir: Path) -> onnx.ModelProto:
        from onnxlab.convert.keras import export

        model = build()
        # large models are converted in a child process from a saved .h5 (see onnxlab.convert.keras.export)
        path = export(model, workdir / f"{name}.onnx", keras_path=workdir / f"{name}.h5")
        return onnx.load(str(path))
    return make


def _zoo(function: str, *args) -> Callable[[], object]:
    def build():
        from onnxlab import zoo

        return getattr(zoo, function)(*args)
    return build


def _application(name: str) -> Callable[[], object]:
    def build():
        from onnxlab.zoo import keras_application

        return keras_application(name, weights="random")[0]
    return build


#: Panel name -> recipe. Keras models are the project's own (``onnxlab.zoo``), untrained; scikit-learn models
#: are fitted on Table K2's data sets (ONNX-ML stores the fitted trees and neighbours in the graph).
MODELS: dict[str, ModelRecipe] = {
    **{name: ModelRecipe(_sklearn(name), f"scikit-learn {name} (Table K2's), skl2onnx")
       for name in ("LogisticRegression", "LinearRegression", "RandomForest", "KNN", "KMeans")},
    "MLP": ModelRecipe(_keras(_zoo("dnn"), "MLP"), "Keras DNN 784-512-512-10 (Table K3's), tf2onnx"),
    "LeNet-1": ModelRecipe(_keras(_zoo("lenet1"), "LeNet-1"), "Keras LeNet-1, tanh (Table K3's), tf2onnx"),
    "LeNet-1 (ReLU)": ModelRecipe(_keras(_zoo("lenet1", "relu"), "LeNet-1-relu"), "Keras LeNet-1, ReLU, tf2onnx"),
    "LeNet-4 (Sigmoid)": ModelRecipe(_keras(_zoo("lenet4", "sigmoid"), "LeNet-4-sigmoid"),
                                     "Keras LeNet-4, sigmoid, tf2onnx"),
    "LeNet-5 (Tanh)": ModelRecipe(_keras(_zoo("lenet5", "tanh"), "LeNet-5-tanh"), "Keras LeNet-5, tanh, tf2onnx"),
    **{name: ModelRecipe(_keras(_application(name), name), f"keras.applications {name}, random weights, tf2onnx")
       for name in ("VGG16", "ResNet50", "DenseNet121")},
}


@dataclass(frozen=True)
class GraphFigure:
    """One of the papers' graph figures.

    Attributes
    ----------
    name
        File stem under ``figures/graphs/``.
    paper_figure
        The paper's figure(s) it redraws.
    panels
        Keys of `MODELS`, drawn left to right.
    pair
        True: one panel, drawn as ONNX (left, the activations highlighted) beside its ONNX-SNN conversion with
        `PAIR_NEURON` (right, the neuron ops highlighted), as the thesis' figures pair them.
    """

    name: str
    paper_figure: str
    title: str
    panels: tuple[str, ...]
    pair: bool = False


FIGURES: dict[str, GraphFigure] = {f.name: f for f in (
    GraphFigure("kim2021_fig2_model_representation", "Kim 2021 Fig. 2",
                "ONNX model representation: an ML model (ONNX-ML ops) and an MLP (ONNX ops)",
                ("LogisticRegression", "MLP")),
    GraphFigure("kim2021_fig3_ml_models", "Kim 2021 Fig. 3", "scikit-learn models in ONNX",
                ("LinearRegression", "RandomForest", "KNN", "KMeans")),
    GraphFigure("kim2021_fig4_dl_models", "Kim 2021 Fig. 4", "Keras models in ONNX",
                ("LeNet-1", "VGG16", "ResNet50", "DenseNet121")),
    GraphFigure("park2019_fig3-2_dense_onnx_vs_snn", "Park 2019 Fig. 3-2",
                "A fully connected network: ONNX (left) and ONNX-SNN (right)", ("MLP",), pair=True),
    GraphFigure("park2019_fig5-3_5-4_lenet1", "Park 2019 Figs. 5-3, 5-4", "LeNet-1: ONNX (ReLU) and ONNX-SNN (LIF)",
                ("LeNet-1 (ReLU)",), pair=True),
    GraphFigure("park2019_fig5-5_5-6_lenet4", "Park 2019 Figs. 5-5, 5-6",
                "LeNet-4: ONNX (Sigmoid) and ONNX-SNN (LIF)", ("LeNet-4 (Sigmoid)",), pair=True),
    GraphFigure("park2019_fig5-7_5-8_lenet5", "Park 2019 Figs. 5-7, 5-8", "LeNet-5: ONNX (Tanh) and ONNX-SNN (LIF)",
                ("LeNet-5 (Tanh)",), pair=True),
)}


def build_models(names: Sequence[str], workdir: str | Path,
                 progress: Callable[[str], None] = lambda name: None) -> dict[str, onnx.ModelProto]:
    """The ONNX model of each panel name (keys of `MODELS`), converted in ``workdir``."""
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise InvalidArgument(f"unknown graph-figure model(s) {', '.join(map(repr, unknown))}; known: "
                              f"{', '.join(MODELS)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    models = {}
    for name in dict.fromkeys(names):
        progress(name)
        models[name] = MODELS[name].make(workdir)
    return models


def _activation_replaced(node: onnx.NodeProto) -> bool:
    from onnxlab.graph import is_default_domain
    from onnxlab.snn.to_snn import DEFAULT_ACTIVATIONS

    return is_default_domain(node.domain) and node.op_type in DEFAULT_ACTIVATIONS


def drawings(figure: GraphFigure, models: dict[str, onnx.ModelProto]) -> list[Drawing]:
    """The panels of ``figure`` as drawings (summarized beyond `MAX_PANEL_BOXES` boxes).

    Panels whose model is missing from ``models`` are left out (a profile may skip the largest networks).
    """
    from onnxlab.snn import to_snn

    out = []
    for name in figure.panels:
        if name not in models:
            continue
        model = models[name]
        if figure.pair:
            out.append(describe(model, f"{name} — ONNX", highlight=_activation_replaced))
            out.append(describe(to_snn(model, PAIR_NEURON), f"{name} — ONNX-SNN ({PAIR_NEURON})"))
        else:
            out.append(describe(model, name))
    return [summarize(d, MAX_PANEL_BOXES) for d in out]


def draw(figure: GraphFigure, models: dict[str, onnx.ModelProto], stem: str | Path) -> tuple[list[Drawing], list[Path]]:
    """Draw ``figure`` to ``stem.svg`` and ``stem.png`` (and the Graphviz source ``stem.dot``).

    Returns
    -------
    (drawings, paths)
    """
    panels = drawings(figure, models)
    if not panels:
        raise InvalidArgument(f"figure {figure.name!r}: none of its models ({', '.join(figure.panels)}) were built")
    return panels, render(to_dot(panels, f"{figure.title} (after {figure.paper_figure})"), stem)


def neuron_ops(drawing: Drawing) -> int:
    """Neuron-op boxes (`ONNX_SNN_DOMAIN`) in a drawing (a collapsed chain counts as a chain, not as neurons)."""
    return sum(len(box.op_types) for box in drawing.boxes if box.category == "neuron")

