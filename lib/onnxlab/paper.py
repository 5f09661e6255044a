"""Published values of the papers, stored as reference data and always labelled as the paper's.

Sources: ``shared/PAPERS.md`` (digest) and the full texts in ``shared/papers/``.
"""
from __future__ import annotations

import math

#: Kim, Han, Heo 2021, Table 3 (our Table K2): seconds to infer the data set 1000 times,
#: (scikit-learn, ONNX Runtime).
KIM2021_ML_SECONDS: dict[str, tuple[float, float]] = {
    "LinearRegression": (0.07, 0.04),
    "LogisticRegression": (0.053, 0.049),
    "RandomForest": (7.47, 0.30),
    "KNN": (1.52, 1.78),
    "KMeans": (0.30, 0.08),
}

#: Kim, Han, Heo 2021, Table 4 (our Table K3): seconds for 10 inferences, (Keras, ONNX Runtime).
#: DNN and LeNet-1 on 28x28 MNIST images; the others on 224x224 images with ImageNet weights.
KIM2021_DL_SECONDS: dict[str, tuple[float, float]] = {
    "DNN": (0.245, 0.002),
    "LeNet-1": (0.05, 0.01),
    "VGG16": (3.93, 3.75),
    "ResNet50": (1.45, 0.54),
    "DenseNet121": (4.48, 0.95),
}

#: Citation printed under tables that show these values.
KIM2021 = ("Kim, Han, Heo 2021, \"Model Transformation and Inference of Machine Learning using "
           "Open Neural Network Format\", JIIBC 21(3)")

#: Our ratio and the paper's "differ" when one is more than this factor away from the other.
RATIO_DIFFERENCE_FACTOR = 2.0


def explain_ratio_difference(model: str, ours: tuple[float, float, int], paper: tuple[float, float, int],
                             baseline: str) -> str | None:
    """A note saying which side moved when our speed-up differs from the paper's by > `RATIO_DIFFERENCE_FACTOR`.

    Parameters
    ----------
    model
        Row name.
    ours, paper
        (baseline seconds, ONNX Runtime seconds, number of inferences those seconds cover).
    baseline
        Name of the baseline engine, e.g. ``"scikit-learn"`` or ``"Keras predict"``.

    Returns
    -------
    str or None
        None when the ratios agree within the factor.
    """
    ours_ratio, paper_ratio = ours[0] / ours[1], paper[0] / paper[1]
    if max(ours_ratio / paper_ratio, paper_ratio / ours_ratio) <= RATIO_DIFFERENCE_FACTOR:
        return None

    def per_call(seconds: float, count: int) -> str:
        return f"{seconds / count * 1e3:.3g} ms"

    base_change, ort_change = (ours[0] / ours[2]) / (paper[0] / paper[2]), (ours[1] / ours[2]) / (paper[1] / paper[2])
    mover = "ONNX Runtime" if abs(math.log(ort_change)) > abs(math.log(base_change)) else baseline
    return (f"{model}: our ratio {ours_ratio:.3g} vs the paper's {paper_ratio:.3g}. Per inference, {baseline} took "
            f"{per_call(ours[0], ours[2])} here vs {per_call(paper[0], paper[2])} in the paper ({base_change:.2g}x), "
            f"ONNX Runtime {per_call(ours[1], ours[2])} vs {per_call(paper[1], paper[2])} ({ort_change:.2g}x): "
            f"the difference comes mostly from {mover} (the paper used 2021 library versions and another CPU).")


#: Kim, Han, Heo 2021, Table 5 (our Table K4): spiking MNIST accuracy before and after the ONNX round trip.
KIM2021_SNN_ACCURACY: tuple[float, float] = (0.987, 0.987)

#: Kim, Han, Heo 2021, Table 2 (our Table K1): parameter shapes of the spiking CNN, NengoDL side and
#: ONNX side, in input-to-output order (the paper prints the ONNX column reversed), each with the
#: parameter role it corresponds to in onnxlab (`onnxlab.snn.parameters`). Layer biases of the
#: paper's NengoDL Keras layers correspond to our ensembles' (per-neuron) biases.
KIM2021_WEIGHT_SHAPES: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = [
    ("conv 1 kernel", "conv0.kernel", (3, 3, 1, 32), (32, 1, 3, 3)),
    ("conv 1 bias", "ensemble0.bias", (32,), (32,)),
    ("conv 2 kernel", "conv1.kernel", (3, 3, 32, 64), (64, 32, 3, 3)),
    ("conv 2 bias", "ensemble1.bias", (64,), (64,)),
    ("conv 3 kernel", "conv2.kernel", (3, 3, 64, 128), (128, 64, 3, 3)),
    ("conv 3 bias", "ensemble2.bias", (128,), (128,)),
    ("dense 1 weight", "dense0.weight", (3200, 784), (3200, 784)),
    ("dense 1 bias", "ensemble3.bias", (784,), (784,)),
    ("dense 2 weight", "dense1.weight", (784, 10), (784, 10)),
    ("dense 2 bias", "bias4", (10,), (10,)),
]


PARK2019 = ("Park 2019, \"ONNX for the spiking deep neural network\", MS thesis, Hansung University, Table 5-3 "
            "(our Table P1)")

#: Park 2019, Table 5-3 (our Table P1): MNIST test error rate (fraction) by (network, activation), in the most
#: likely reading of a garbled text extraction (``shared/PAPERS.md``). The spiking rows are read as interleaved
#: (LIF, SoftLIFRate) pairs per network; the non-spiking triples are assigned to the rows in the table's order
#: (Tanh, Sigmoid, ReLU), with the floating "Sigmoid" label taken as misplaced: uncertain, said so in every table.
PARK2019_ERROR_RATES: dict[tuple[str, str], float] = {
    **{(net, "Tanh"): v for net, v in zip(("LeNet-1", "LeNet-4", "LeNet-5"), (0.0006, 0.0004, 0.0034))},
    **{(net, "Sigmoid"): v for net, v in zip(("LeNet-1", "LeNet-4", "LeNet-5"), (0.0018, 0.0023, 0.0034))},
    **{(net, "ReLU"): v for net, v in zip(("LeNet-1", "LeNet-4", "LeNet-5"), (0.0006, 0.0006, 0.0006))},
    **{(net, "LIF"): v for net, v in zip(("LeNet-1", "LeNet-4", "LeNet-5"), (0.0171, 0.0332, 0.0358))},
    **{(net, "SoftLIFRate"): v for net, v in zip(("LeNet-1", "LeNet-4", "LeNet-5"), (0.0103, 0.0109, 0.0107))},
}

#: Park 2019's training settings for Table 5-3: learning rate, epochs, batch size (the optimizer is not named).
PARK2019_TRAINING = {"learning_rate": 0.01, "epochs": 100, "batch_size": 200}

#: LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition": MNIST test
#: error rates of the LeNets (tanh-like squashing, no distortions).
LECUN1998_ERROR_RATES: dict[str, float] = {"LeNet-1": 0.017, "LeNet-4": 0.011, "LeNet-5": 0.0095}
#: LeCun et al. 1998: MNIST test error of LeNet-5 trained with randomly distorted copies of the training images
#: (affine: translation, scaling, squeezing, shearing).
LECUN1998_DISTORTED_ERROR_RATES: dict[str, float] = {"LeNet-5": 0.008}

#: Hunsberger & Eliasmith 2015, "Spiking deep networks with LIF neurons": spiking LIF network on MNIST (a larger
#: network than the LeNets), test error rate.
HUNSBERGER2015_LIF_ERROR_RATE = 0.0088


# --------------------------------------------------------------------------- quantization (paper J) references

#: Paper J, for table captions.
JANG2021 = ("Jang, Lee, Heo 2021, \"Lightweight of ONNX using Quantization-based Model Compression\", "
            "JIIBC 21(1), pp. 93-98")
#: Intel Neural Compressor's published int8 throughput speed-ups over fp32 on a Xeon, as cited by issue 14 (a
#: reference point for ResNet50, not a measurement here); accuracy change -0.2 points.
INC_INT8_THROUGHPUT_SPEEDUP: dict[str, float] = {"ResNet50": 2.2, "VGG16": 3.5}
INC_INT8_ACCURACY_CHANGE_POINTS = -0.2
