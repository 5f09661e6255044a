"""Format constants: the one place that says which ONNX opset and IR version onnxlab writes.

Every converter targets these, and tests compare against them. Files stamped with a newer IR
version than the installed onnxruntime knows are rejected by it, so the IR version is pinned to
the minimum that the opsets below require rather than to ``onnx.IR_VERSION``.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx

from onnxlab.errors import InvalidArgument, OnnxlabError

#: Default-domain (``ai.onnx``) opset of every model onnxlab writes.
ONNX_OPSET = 17
#: ONNX-ML (``ai.onnx.ml``) opset, used by scikit-learn models.
ONNX_ML_OPSET = 3
#: Domain name of the ONNX-ML operators (trees, linear classifiers, ...).
ONNX_ML_DOMAIN = "ai.onnx.ml"
#: IR version written into every file: the minimum that ONNX_OPSET and ONNX_ML_OPSET need.
IR_VERSION = 8
#: Producer name stamped into files written by onnxlab.
PRODUCER = "onnxlab"

#: Domain of the ONNX-SNN spiking-neuron operators (reverse DNS, deliberately not ``ai.onnx.*``).
ONNX_SNN_DOMAIN = "org.onnxlab.snn"
#: Version of the ONNX-SNN operator set; every ONNX-SNN model imports it.
ONNX_SNN_OPSET = 1

#: Serialized size above which `save_model` writes the tensors to a side file (protobuf cannot exceed 2 GiB;
#: ONNX files this large are also slow to open in Netron).
EXTERNAL_DATA_THRESHOLD_BYTES = 512 << 20
#: Suffix of that side file: ``model.onnx`` -> ``model.onnx.data``, as PyTorch's exporter names it.
EXTERNAL_DATA_SUFFIX = ".data"

#: Opsets passed to converters that accept a per-domain mapping (skl2onnx).
TARGET_OPSETS = {"": ONNX_OPSET, ONNX_ML_DOMAIN: ONNX_ML_OPSET}


def finalize(model: onnx.ModelProto, *, full_check: bool = True, keep_ir_version: bool = False) -> onnx.ModelProto:
    """Stamp ``model``'s IR version and validate it with ``onnx.checker``; its opsets are left as they are.

    Parameters
    ----------
    model
        A model produced by a converter or a pass. Modified in place.
    full_check
        Also run strict shape inference (``onnx.checker.check_model(full_check=True)``).
        Models with external data must be checked by path instead and pass ``False``.
    keep_ir_version
        For a pass over someone else's file (`onnxlab.snn.to_snn`, `onnxlab.snn.upgrade`): keep
        the file's IR version unless its opsets or model-local functions need a newer one. Otherwise
        the IR version is `IR_VERSION`, or what the opsets need if that is newer.

    Returns
    -------
    onnx.ModelProto
        The same object, for chaining.

    Raises
    ------
    OnnxlabError
        If the model imports an ai.onnx opset newer than the installed onnx knows.
    onnx.checker.ValidationError
        If the model is not valid ONNX (a bug in the pass that wrote it).
    """
    from onnxlab.graph import MAX_SUPPORTED_OPSET, is_default_domain, min_ir_version

    for opset in model.opset_import:
        if is_default_domain(opset.domain) and opset.version > MAX_SUPPORTED_OPSET:
            raise OnnxlabError(f"model {model.graph.name!r} imports ai.onnx opset {opset.version}, newer than the "
                               f"installed onnx {onnx.__version__} knows ({MAX_SUPPORTED_OPSET})")
    floor = model.ir_version if keep_ir_version else IR_VERSION
    model.ir_version = max(floor, min_ir_version(model))
    onnx.checker.check_model(model, full_check=full_check)
    return model


def read_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse an ONNX file without checking it or reading its external data (see `load_model` for both).

    Raises
    ------
    OnnxlabError
        One line naming the file: missing, empty, a directory, not an ONNX protobuf, no graph.
    """
    path = Path(path)
    if path.is_dir():
        raise OnnxlabError(f"{path}: is a directory, not an ONNX file")
    if not path.is_file():
        raise OnnxlabError(f"{path}: no such file")
    data = path.read_bytes()
    return parse_model(data, str(path))


def parse_model(data: bytes, name: str = "<bytes>") -> onnx.ModelProto:
    """Parse serialized model bytes; a one-line `OnnxlabError` (naming ``name``) for anything else."""
    if not data:
        raise OnnxlabError(f"{name}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # google.protobuf DecodeError, RecursionError on hostile nesting
        raise OnnxlabError(f"{name}: not an ONNX model (the protobuf does not parse: "
                           f"{type(exc).__name__})") from None
    if not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise OnnxlabError(f"{name}: not an ONNX model (no graph; a valid protobuf of another kind?)")
    if not model.opset_import and model.ir_version >= 3:
        raise OnnxlabError(f"{name}: not a valid ONNX model (no opset_import)")
    return model


def load_model(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, with its external data, with one clear error for a missing, unreadable or invalid file.

    Parameters
    ----------
    check
        Also run ``onnx.checker.check_model`` (off for legacy files that need upgrading first).

    Raises
    ------
    OnnxlabError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    model = read_model(path)
    if uses_external_data(model):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # a missing or short data file
            raise OnnxlabError(f"{path}: its external data cannot be read ({type(exc).__name__}: {exc})") from None
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            from onnxlab.snn.legacy import is_legacy

            hint = (f" — a file of the original ONNX-SNN tool (neuron ops in the default domain): "
                    f"`onnxlab upgrade {path} upgraded.onnx` converts it" if is_legacy(model) else "")
            raise OnnxlabError(f"{path}: invalid ONNX model: {str(exc).splitlines()[0]}{hint}") from None
    return model


def uses_external_data(model: onnx.ModelProto) -> bool:
    """True if any initializer of ``model`` keeps its data in a side file."""
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2``, ... whichever is not in ``taken``; added to ``taken``."""
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def as_model(model: onnx.ModelProto | str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """``model`` itself if it is a proto, else the file loaded with `load_model`."""
    return model if isinstance(model, onnx.ModelProto) else load_model(model, check=check)


def write_atomically(path: str | os.PathLike, write) -> Path:
    """Call ``write(partial_path)``, then move the result to ``path``; a failure leaves nothing behind."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
    """Write ``model`` to ``path`` atomically: a failed write leaves no partial file behind.

    Parameters
    ----------
    external_data
        Put every tensor in a side file ``<path name>.data`` beside ``path`` (found relative to the
        model file, as onnx and ONNX Runtime expect). Default: only when the serialized model is
        larger than `EXTERNAL_DATA_THRESHOLD_BYTES`; one self-contained file otherwise.
    """
    path = Path(path)
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_THRESHOLD_BYTES
    if not external_data:
        return write_atomically(path, lambda partial: onnx.save(model, str(partial)))
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save rewrites the tensors it moves out
    data_name = path.name + EXTERNAL_DATA_SUFFIX
    (path.parent / data_name).unlink(missing_ok=True)  # onnx appends to an existing side file
    try:
        return write_atomically(path, lambda partial: onnx.save(
            copy, str(partial), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name,
            size_threshold=0))
    except BaseException:
        (path.parent / data_name).unlink(missing_ok=True)
        raise


def with_external_data(model: onnx.ModelProto, path: str | os.PathLike | None) -> onnx.ModelProto:
    """``model`` with the external data it refers to read in (from beside ``path``); itself if it has none."""
    if path is None or not uses_external_data(model):
        return model
    return load_model(path, check=False)


def save_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (as `save_model`)."""
    return write_atomically(path, lambda partial: partial.write_text(text))


def save_arrays(arrays: dict, path: str | os.PathLike) -> Path:
    """Write arrays atomically: a ``.npy`` file holds exactly one, a ``.npz`` file any number by name."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".npy" and len(arrays) != 1:
        raise InvalidArgument(f"{path}: a .npy file holds one array, got {len(arrays)}; use .npz")

    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            if path.suffix == ".npy":
                np.save(f, next(iter(arrays.values())))
            else:
                np.savez(f, **arrays)

    return write_atomically(path, write)
