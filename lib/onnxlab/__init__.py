"""onnxlab — move models between ML frameworks through ONNX, and measure what it costs.

The public entry points, callable from the package itself::

    import onnxlab
    onnxlab.classify("model.onnx")             # ML / DL / SNN, with the evidence
    onnxlab.run("model.onnx", x)               # on the engine of its kind (ONNX Runtime or NengoDL)
    onnx_model = onnxlab.to_onnx(fitted, x)    # scikit-learn or Keras -> ONNX
    snn = onnxlab.to_snn(onnx_model, "LIF")    # ONNX -> ONNX-SNN (any opset 9-22)
    net = onnxlab.to_nengo(snn)                # ONNX-SNN -> nengo.Network
    back = onnxlab.from_nengo(net)             # Nengo -> ONNX-SNN
    upgraded, changes = onnxlab.upgrade("old-tool-file.onnx")

Importing onnxlab loads only onnx and numpy: TensorFlow, scikit-learn and Nengo are imported when
a function that needs them is called. Submodules keep their names (``onnxlab.classify`` is also the
module holding `classify`): ``from onnxlab.classify import classify`` binds the name to the function
after the submodule is imported, so ``onnxlab.classify`` is always the function; read the module's
other names with ``from onnxlab.classify import KINDS``.
"""
from onnxlab.classify import classify
from onnxlab.convert import to_onnx
from onnxlab.errors import OnnxlabError
from onnxlab.inference import run
from onnxlab.snn.from_nengo import from_nengo
from onnxlab.snn.legacy import upgrade
from onnxlab.snn.to_nengo import to_nengo
from onnxlab.snn.to_snn import to_snn

__all__ = ["OnnxlabError", "classify", "from_nengo", "run", "to_nengo", "to_onnx", "to_snn", "upgrade"]
__version__ = "0.1.0"
