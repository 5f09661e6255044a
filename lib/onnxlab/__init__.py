"""onnxlab — move models between ML frameworks through ONNX, and measure what it costs.

The public entry points are re-exported here; heavy frameworks (TensorFlow, scikit-learn,
Nengo) are imported only when a function that needs them is called.
"""
from onnxlab.convert import to_onnx
from onnxlab.errors import OnnxlabError

__all__ = ["to_onnx", "OnnxlabError"]
__version__ = "0.1.0"
