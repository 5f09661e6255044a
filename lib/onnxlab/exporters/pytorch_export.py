"""Export the foreign-models table's networks with PyTorch's own ``torch.onnx.export``.

Run by `onnxlab.foreign.export_pytorch` with the Python of the PyTorch environment
(``make pytorch-env``: PyTorch needs typing-extensions >= 4.10, which TensorFlow 2.12 in the main
environment forbids), as ``python pytorch_export.py SPEC.json``. It imports only torch, numpy and
onnx — never onnxlab — and writes what SPEC asks for:

- ``networks``: name -> ``.npz`` of weights in PyTorch's layout, stored as ``p0, p1, ...`` in the
  order of the module's ``state_dict`` (BatchNorm's ``num_batches_tracked`` excepted);
- ``inputs``: an ``.npy`` batch, NCHW float32;
- ``exports``: a list of ``{network, exporter: "torchscript"|"dynamo", opset, path}``; the dynamo
  exporter writes its weights to ``<path>.data`` beside the file, as PyTorch 2.x does;
- ``outputs``: an ``.npz`` written with each network's PyTorch output on ``inputs``, by name.

The architectures mirror `onnxlab.zoo.lenet5` (ReLU) and `onnxlab.zoo.residual_bn_cnn`; module names
(``features``, ``classifier``, ``stem``, ``block``) give PyTorch's node names (``/features/features.0/Conv``).
"""
import json
import sys
import warnings

import numpy as np
import torch
from torch import nn

#: Keras' BatchNormalization epsilon, which the residual network's BN layers use.
KERAS_BN_EPSILON = 1e-3


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, 10), nn.Softmax(dim=1))

    def forward(self, x):
        return self.classifier(self.features(x))


#: Channels of every convolution of the residual network (`onnxlab.zoo.RESIDUAL_BN_CHANNELS`).
RESIDUAL_BN_CHANNELS = 16


def conv_bn(in_channels, relu):
    layers = [nn.Conv2d(in_channels, RESIDUAL_BN_CHANNELS, 3, padding=1, bias=False),
              nn.BatchNorm2d(RESIDUAL_BN_CHANNELS, eps=KERAS_BN_EPSILON)]
    return layers + ([nn.ReLU()] if relu else [])


class ResidualBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, True), nn.AvgPool2d(2))
        self.block = nn.Sequential(*conv_bn(RESIDUAL_BN_CHANNELS, True), *conv_bn(RESIDUAL_BN_CHANNELS, False))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(RESIDUAL_BN_CHANNELS, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        h = self.stem(x)
        h = self.relu(h + self.block(h))
        return self.softmax(self.fc(torch.flatten(self.pool(h), 1)))


NETWORKS = {"lenet5": LeNet5, "residual_bn_cnn": ResidualBN}


def load(name, weights_path):
    module = NETWORKS[name]()
    arrays = np.load(weights_path)
    keys = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    if len(keys) != len(arrays.files):
        raise SystemExit(f"error: {name} has {len(keys)} tensors, {weights_path} holds {len(arrays.files)}")
    state = module.state_dict()
    for i, key in enumerate(keys):
        value = torch.from_numpy(arrays[f"p{i}"])
        if tuple(value.shape) != tuple(state[key].shape):
            raise SystemExit(f"error: {name}.{key}: expected shape {tuple(state[key].shape)}, got {tuple(value.shape)}")
        state[key] = value
    module.load_state_dict(state)
    return module.eval()


def main(spec_path):
    spec = json.loads(open(spec_path).read())
    x = torch.from_numpy(np.load(spec["inputs"]))
    modules = {name: load(name, path) for name, path in spec["networks"].items()}
    with torch.no_grad():
        np.savez(spec["outputs"], **{name: m(x).numpy() for name, m in modules.items()})
    for job in spec["exports"]:
        dynamo = job["exporter"] == "dynamo"
        shapes = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo
                  else {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(modules[job["network"]], (x,), job["path"], opset_version=job["opset"], dynamo=dynamo,
                              input_names=["input"], output_names=["output"], external_data=dynamo, verbose=False,
                              **shapes)
        print(f"wrote {job['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
