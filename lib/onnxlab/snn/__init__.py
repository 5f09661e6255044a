"""ONNX-SNN: spiking neural networks in ONNX, and conversions to and from Nengo.

- `neurons`: the neuron operators (domain ``org.onnxlab.snn``) and their rate functions;
- `to_snn`: ONNX -> ONNX-SNN (activations replaced by neuron ops);
- `legacy`: read and upgrade files of the original ONNX-SNN tool;
- `simulation`: simulation settings stored in the file;
- `layout`: weight remapping between Nengo/Keras and ONNX layouts;
- `builders`, `description`, `transforms`, `to_nengo`, `codegen`: ONNX-SNN -> Nengo (one builder per op and
  opset range, describing the network once; realized as Nengo objects or rendered as a script);
- `from_nengo`, `simulate`, `train`, `keras_rates`, `parameters`: Nengo -> ONNX-SNN, NengoDL runs and training;
- `spiking_onnx`: ONNX-SNN -> a plain ONNX time loop (each neuron op's Nengo step), spiking in ONNX Runtime alone.
"""
from onnxlab.snn.legacy import is_legacy, upgrade
from onnxlab.snn.neurons import NEURONS
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.spiking_onnx import to_spiking_onnx
from onnxlab.snn.to_snn import to_snn

__all__ = ["NEURONS", "Simulation", "is_legacy", "to_snn", "to_spiking_onnx", "upgrade"]
