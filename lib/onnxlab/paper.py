"""Published values of the papers, stored as reference data and always labelled as the paper's.

Sources: ``shared/PAPERS.md`` (digest) and the full texts in ``shared/papers/``.
"""
from __future__ import annotations

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
