"""Seeing a model: Netron served on localhost, inline in JupyterLab.

``netron(path_or_model)`` checks that the file is an ONNX model (one clear error otherwise), serves it with
the ``netron`` package on a free localhost port and returns a `NetronView`: its ``url``, ``stop()``, and an
inline view when it is the last expression of a notebook cell. ``onnxlab view FILE`` and ``make netron
MODEL=FILE`` call the same function. An ONNX-SNN file shows its neuron ops as nodes of the
``org.onnxlab.snn`` domain, their function bodies expandable.
"""
from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

#: Host Netron listens on (never all interfaces).
HOST = "127.0.0.1"
#: Height of the inline view in a notebook, in pixels.
IFRAME_HEIGHT = 600


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class NetronView:
    """A model served by Netron: its address and how to stop it."""

    path: Path
    address: tuple[str, int]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def stop(self) -> None:
        """Stop serving."""
        import netron as _netron

        _netron.stop(self.address)

    def _repr_html_(self) -> str:
        return (f'<iframe src="{self.url}" width="100%" height="{IFRAME_HEIGHT}" style="border:0"></iframe>'
                f'<p>Netron: <a href="{self.url}" target="_blank">{self.url}</a> — {self.path.name}</p>')


def check_onnx_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a readable ONNX model file (a legacy, checker-invalid ONNX-SNN file passes too).

    Raises
    ------
    OnnxlabError
        Naming the file: missing, a directory, or not an ONNX model.
    """
    from onnxlab.formats import read_model

    path = Path(path)
    read_model(path)
    return path


def netron(model: str | os.PathLike | onnx.ModelProto, port: int | None = None) -> NetronView:
    """Serve ``model`` (a path or a proto, written to a temporary file) with Netron on localhost.

    Parameters
    ----------
    port
        TCP port; None picks a free one.
    """
    import netron as _netron

    if isinstance(model, onnx.ModelProto):
        folder = Path(tempfile.mkdtemp(prefix="onnxlab-netron-"))
        path = folder / f"{model.graph.name or 'model'}.onnx"
        onnx.save(model, str(path))
    else:
        path = check_onnx_file(model)
    address = _netron.start(str(path), address=(HOST, port or free_port()), browse=False)
    return NetronView(path, tuple(address))
