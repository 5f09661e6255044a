"""The papers' models: scikit-learn estimators for Table K2 and Keras networks for Table K3.

Each model is a registry entry (`ML_MODELS`, `DL_MODELS`) naming its data set and how to build
it, so notebooks and tests iterate over the registry instead of repeating definitions.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from onnxlab.errors import InvalidArgument

# --------------------------------------------------------------------------- scikit-learn (Table K2)

#: Metric name -> function(y_true, y_pred) used to show that conversion leaves results unchanged.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}


def _register_metrics() -> None:
    from sklearn.metrics import accuracy_score, adjusted_rand_score, r2_score

    METRICS.update(r2=r2_score, accuracy=accuracy_score, adjusted_rand=adjusted_rand_score)


def metric(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Evaluate metric ``name`` (one of ``r2``, ``accuracy``, ``adjusted_rand``)."""
    if not METRICS:
        _register_metrics()
    return float(METRICS[name](y_true, np.asarray(y_pred).ravel()))


@dataclass(frozen=True)
class OrtVariant:
    """One way to convert and run a model in ONNX Runtime.

    Attributes
    ----------
    convert_options
        Keyword arguments for `onnxlab.to_onnx` (``dtype``, ``model_options``).
    intra_op_threads
        ONNX Runtime threads per operator; 0 = ONNX Runtime's default (one per core).
    """

    name: str
    convert_options: dict[str, Any] = field(default_factory=dict)
    intra_op_threads: int = 0

    @property
    def dtype(self) -> type:
        """Input dtype the converted model expects."""
        return self.convert_options.get("dtype", np.float32)


@dataclass(frozen=True)
class MLSpec:
    """A scikit-learn model of Table K2.

    Attributes
    ----------
    dataset
        Key of `onnxlab.data.TABULAR_DATASETS`.
    make
        seed -> unfitted estimator.
    metric
        Key of `METRICS`, computed on the test set before and after conversion.
    model_options
        skl2onnx options worth trying for this model besides the defaults.
    """

    name: str
    dataset: str
    make: Callable[[int], Any]
    metric: str
    model_options: tuple[dict[str, Any], ...] = ()

    def variants(self) -> list[OrtVariant]:
        """Every combination of input dtype × ORT threads × model options; the first is the default."""
        out = []
        for opts, dtype, threads in itertools.product(({},) + self.model_options,
                                                      (np.float32, np.float64), (0, 1)):
            parts = [f"{k}={v}" for k, v in opts.items()]
            parts += [np.dtype(dtype).name, "1 thread" if threads == 1 else "default threads"]
            convert = {"dtype": dtype, **({"model_options": opts} if opts else {})}
            out.append(OrtVariant(", ".join(parts), convert, threads))
        return out


def _sk(cls_path: str, **kwargs: Any) -> Callable[[int], Any]:
    """Factory for a scikit-learn estimator given by import path; ``random_state`` gets the seed."""
    def make(seed: int) -> Any:
        import importlib

        module, name = cls_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        params = dict(kwargs)
        if "random_state" in cls().get_params():
            params["random_state"] = seed
        return cls(**params)
    return make


#: The five models of Table K2 (paper Table 3), in the paper's order.
ML_MODELS: dict[str, MLSpec] = {spec.name: spec for spec in (
    MLSpec("LinearRegression", "boston", _sk("sklearn.linear_model.LinearRegression"), "r2"),
    MLSpec("LogisticRegression", "iris", _sk("sklearn.linear_model.LogisticRegression", max_iter=1000),
           "accuracy"),
    MLSpec("RandomForest", "iris", _sk("sklearn.ensemble.RandomForestClassifier", n_estimators=100),
           "accuracy"),
    MLSpec("KNN", "iris", _sk("sklearn.neighbors.KNeighborsClassifier", n_neighbors=5), "accuracy",
           model_options=({"optim": "cdist"},)),
    MLSpec("KMeans", "blobs", _sk("sklearn.cluster.KMeans", n_clusters=3, n_init=10), "adjusted_rand"),
)}


# --------------------------------------------------------------------------- Keras (Table K3)

#: Shape of one MNIST image as the Keras models take it (H, W, C).
MNIST_SHAPE = (28, 28, 1)
#: Shape of one ImageNet image (H, W, C).
IMAGENET_SHAPE = (224, 224, 3)


def dnn(hidden: tuple[int, ...] = (512, 512), dropout: float = 0.2):
    """The paper's "DNN": a multilayer perceptron on MNIST.

    The paper gives no architecture; this is the Keras ``mnist_mlp`` example of its time:
    flatten 784 → [dense 512 ReLU → dropout 0.2] × 2 → dense 10 softmax. Input (N, 28, 28, 1).
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Sequential, layers

    model = Sequential(name="DNN")
    model.add(layers.Input(MNIST_SHAPE, name="image"))
    model.add(layers.Flatten())
    for width in hidden:
        model.add(layers.Dense(width, activation="relu"))
        model.add(layers.Dropout(dropout))
    model.add(layers.Dense(10, activation="softmax"))
    return model


#: Shape of one CIFAR-10 image (H, W, C).
CIFAR10_SHAPE = (32, 32, 3)


def cifar10_cnn(dropout: tuple[float, float] = (0.25, 0.5)):
    """Paper J's "CNN on CIFAR-10": the Keras ``cifar10_cnn`` example of its time.

    Paper J gives no architecture; this is the example Keras shipped then: [conv 32@3x3 same → conv 32@3x3 →
    maxpool 2 → dropout] → [conv 64@3x3 same → conv 64@3x3 → maxpool 2 → dropout] → flatten → dense 512 →
    dropout → dense 10 softmax, ReLU throughout (1.25 M parameters). Input (N, 32, 32, 3) in [0, 1].
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Sequential, layers

    model = Sequential(name="CIFAR10_CNN")
    model.add(layers.Input(CIFAR10_SHAPE, name="image"))
    for filters in (32, 64):
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(layers.Conv2D(filters, 3, activation="relu"))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.Dropout(dropout[0]))
    model.add(layers.Flatten())
    model.add(layers.Dense(512, activation="relu"))
    model.add(layers.Dropout(dropout[1]))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def _lenet(name: str, maps: tuple[int, int], hidden: tuple[int, ...], activation: str | Callable,
           first_padding: str = "valid", logits: bool = False):
    """The LeNet family: conv ``maps[0]``@5x5 → avgpool 2 → conv ``maps[1]``@5x5 → avgpool 2 → flatten →
    dense ``hidden`` (each with ``activation``) → dense 10 softmax (or logits, if ``logits``).
    Input (N, 28, 28, 1)."""
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Sequential, layers

    return Sequential([
        layers.Input(MNIST_SHAPE, name="image"),
        layers.Conv2D(maps[0], 5, padding=first_padding, activation=activation),
        layers.AveragePooling2D(2),
        layers.Conv2D(maps[1], 5, activation=activation),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        *(layers.Dense(width, activation=activation) for width in hidden),
        layers.Dense(10, activation=None if logits else "softmax"),
    ], name=name)


def lenet1(activation: str | Callable = "tanh", logits: bool = False):
    """LeNet-1 (LeCun et al. 1998) on 28x28 MNIST.

    conv 4@5x5 (24x24) → avgpool 2 (12x12) → conv 12@5x5 (8x8) → avgpool 2 (4x4) → dense 10 softmax.
    ``activation`` follows each convolution (LeCun used tanh). Input (N, 28, 28, 1); 3 246 parameters
    (104 + 1 212 + 1 930; every conv-2 map sees all 4 conv-1 maps).
    """
    return _lenet("LeNet-1", (4, 12), (), activation, logits=logits)


def lenet4(activation: str | Callable = "tanh", logits: bool = False):
    """LeNet-4 (LeCun et al. 1998) on 28x28 MNIST.

    conv 4@5x5 (24x24) → avgpool 2 → conv 16@5x5 (8x8) → avgpool 2 (4x4) → dense 120 → dense 10 softmax.
    Input (N, 28, 28, 1).
    """
    return _lenet("LeNet-4", (4, 16), (120,), activation, logits=logits)


def lenet5(activation: str | Callable = "tanh", logits: bool = False):
    """LeNet-5 (LeCun et al. 1998) on 28x28 MNIST.

    conv 6@5x5 'same' (28x28, as LeCun's 32x32 input gives) → avgpool 2 → conv 16@5x5 (10x10) →
    avgpool 2 (5x5) → dense 120 → dense 84 → dense 10 softmax. Input (N, 28, 28, 1).
    """
    return _lenet("LeNet-5", (6, 16), (120, 84), activation, first_padding="same", logits=logits)


def residual_cnn():
    """A small branching Keras CNN: a residual block (Add) and two concatenated branches (Concatenate).

    Input (N, 28, 28, 1) → conv 8@3x3 'same' → [conv 8@3x3 'same' + skip] ++ [conv 4@1x1] → avgpool 4 →
    dense 10 softmax.
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Model, layers

    image = layers.Input(MNIST_SHAPE, name="image")
    stem = layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    residual = layers.Add()([layers.Conv2D(8, 3, padding="same", activation="relu")(stem), stem])
    branches = layers.Concatenate()([residual, layers.Conv2D(4, 1, activation="relu")(stem)])
    pooled = layers.Flatten()(layers.AveragePooling2D(4)(branches))
    return Model(image, layers.Dense(10, activation="softmax")(pooled), name="residual-cnn")


#: Channels of every convolution of `residual_bn_cnn`.
RESIDUAL_BN_CHANNELS = 16


def residual_bn_cnn():
    """A small residual Keras CNN with batch normalisation and a skip connection (the foreign-models table).

    Input (N, 28, 28, 1) → [conv 16@3x3 'same' → BN → ReLU → avgpool 2] (stem, 14x14) → [conv 16@3x3 → BN →
    ReLU → conv 16@3x3 → BN] + stem → ReLU → global average pool → dense 10 softmax. Convolutions have no bias
    (BN has it), as in ResNets; BN's epsilon is Keras' 1e-3. `onnxlab/exporters/pytorch_export.py` mirrors it.
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Model, layers

    def conv_bn(x, relu: bool):
        x = layers.BatchNormalization()(layers.Conv2D(RESIDUAL_BN_CHANNELS, 3, padding="same", use_bias=False)(x))
        return layers.ReLU()(x) if relu else x

    image = layers.Input(MNIST_SHAPE, name="image")
    stem = layers.AveragePooling2D(2)(conv_bn(image, relu=True))
    block = conv_bn(conv_bn(stem, relu=True), relu=False)
    pooled = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.Add()([block, stem])))
    return Model(image, layers.Dense(10, activation="softmax")(pooled), name="residual-bn-cnn")


#: keras.applications constructor name -> file name of its ImageNet weights in the Keras cache.
IMAGENET_WEIGHT_FILES = {
    "VGG16": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "ResNet50": "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    "DenseNet121": "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
}


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_weights_available(name: str) -> bool:
    """True if the ImageNet weights of ``name`` are already in the Keras cache (no download)."""
    return (keras_cache_dir() / IMAGENET_WEIGHT_FILES[name]).is_file()


def keras_application(name: str, weights: str = "auto"):
    """A ``keras.applications`` model with 224x224x3 input and 1000 classes.

    Parameters
    ----------
    name
        ``VGG16``, ``ResNet50`` or ``DenseNet121``.
    weights
        ``"imagenet"``, ``"random"``, or ``"auto"``: ImageNet weights if they are in the Keras
        cache, else random initialisation (ImageNet weights cannot be downloaded offline;
        inference time does not depend on weight values).

    Returns
    -------
    (model, weights_used)
        ``weights_used`` is ``"imagenet"`` or ``"random"``, for the table note.
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import applications

    if name not in IMAGENET_WEIGHT_FILES:
        raise InvalidArgument(f"unknown application {name!r}; known: {', '.join(IMAGENET_WEIGHT_FILES)}")
    if weights == "auto":
        weights = "imagenet" if imagenet_weights_available(name) else "random"
    if weights not in ("imagenet", "random"):
        raise InvalidArgument(f"weights must be 'auto', 'imagenet' or 'random', got {weights!r}")
    build = getattr(applications, name)
    model = build(weights="imagenet" if weights == "imagenet" else None)
    return model, weights


def kim2021_snn_cnn(activation: str = "relu"):
    """The spiking CNN of Kim et al. 2021 (Tables K1, K4), as a Keras model.

    conv 32@3x3 (26x26) → conv 64@3x3 stride 2 (12x12) → conv 128@3x3 stride 2 (5x5) →
    flatten (3200) → dense 784 → dense 10 (logits). The strides follow NengoDL's spiking MNIST
    example, which gives the paper's flatten size of 3200. ``activation`` marks where
    `onnxlab.snn.to_snn` puts the spiking neurons. Input (N, 28, 28, 1).
    """
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Sequential, layers

    return Sequential([
        layers.Input(MNIST_SHAPE, name="image"),
        layers.Conv2D(32, 3, activation=activation),
        layers.Conv2D(64, 3, strides=2, activation=activation),
        layers.Conv2D(128, 3, strides=2, activation=activation),
        layers.Flatten(),
        layers.Dense(784, activation=activation),
        layers.Dense(10),
    ], name="Kim2021-SNN-CNN")


@dataclass(frozen=True)
class DLSpec:
    """A Keras model of Table K3.

    Attributes
    ----------
    build
        () -> (keras model, weights description).
    input_shape
        Shape of one input image (H, W, C).
    trained_on_mnist
        True if the notebook trains it on MNIST before timing.
    """

    name: str
    build: Callable[[], tuple[Any, str]]
    input_shape: tuple[int, ...]
    trained_on_mnist: bool


#: The five models of Table K3 (paper Table 4), in the paper's order.
DL_MODELS: dict[str, DLSpec] = {spec.name: spec for spec in (
    DLSpec("DNN", lambda: (dnn(), "trained on MNIST"), MNIST_SHAPE, True),
    DLSpec("LeNet-1", lambda: (lenet1(), "trained on MNIST"), MNIST_SHAPE, True),
    *(DLSpec(name, lambda name=name: keras_application(name), IMAGENET_SHAPE, False)
      for name in IMAGENET_WEIGHT_FILES),
)}


def train_keras_classifier(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int = 128,
                learning_rate: float = 1e-3, seed: int = 0, from_logits: bool | None = None,
                optimizer: str = "adam", schedule: str = "constant", shift_pixels: float = 0.0,
                weight_decay: float = 0.0, progress: str | None = None):
    """Train a Keras image classifier (MNIST, CIFAR-10) with sparse cross-entropy (Adam at a constant rate by default).

    Parameters
    ----------
    x
        float32 images, shape (N, H, W, C) — (N, 28, 28, 1) for MNIST — values in [0, 1].
    y
        Integer labels, shape (N,).
    from_logits
        Whether the model outputs logits; by default, True unless its last layer applies softmax.
    optimizer, schedule
        Names in `onnxlab.training.optimizers` and `onnxlab.training.schedules` (the schedule spans all
        ``epochs``), with the initial ``learning_rate``.
    shift_pixels
        Data augmentation: each training image is shifted by a random offset of up to this many pixels
        vertically and horizontally (zero fill), drawn anew every epoch. 0 (default): the images as they are.
    weight_decay
        Decoupled weight decay (Loshchilov & Hutter 2019, as ``AdamW``): after every step each weight (biases
        included) shrinks by ``weight_decay`` times the step's learning rate. 0 (default): none.
    progress
        If given, print one line per epoch (loss, accuracy) prefixed with it (`onnxlab.training.epoch_logger`).

    Returns
    -------
    keras.callbacks.History
    """
    import keras
    import tensorflow as tf

    from onnxlab.training import epoch_logger, optimizers, schedules

    for name, value, known in (("optimizer", optimizer, optimizers()), ("schedule", schedule, schedules())):
        if value not in known:
            raise InvalidArgument(f"train_keras_classifier: unknown {name} {value!r}; known: {', '.join(known)}")
    for name, value in (("shift_pixels", shift_pixels), ("weight_decay", weight_decay)):
        if value < 0:
            raise InvalidArgument(f"train_keras_classifier: {name} must be >= 0, got {value}")
    if from_logits is None:
        from_logits = getattr(model.layers[-1], "activation", None) is not keras.activations.softmax
    tf.random.set_seed(seed)
    steps = epochs * -(-len(x) // batch_size)
    # Keras' optimizers (TF >= 2.11) apply weight_decay decoupled from the gradient; None turns it off
    model.compile(optimizer=optimizers()[optimizer](schedules()[schedule](learning_rate, steps),
                                                    weight_decay=weight_decay or None),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    callbacks = [epoch_logger(progress, epochs)] if progress else []
    if not shift_pixels:
        return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True, callbacks=callbacks)
    shift = keras.layers.RandomTranslation(shift_pixels / x.shape[1], shift_pixels / x.shape[2],
                                           fill_mode="constant", seed=seed)
    batches = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size)
               .map(lambda images, labels: (shift(images, training=True), labels),
                    num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    return model.fit(batches, epochs=epochs, verbose=0, callbacks=callbacks)
