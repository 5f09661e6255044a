"""The Nengo transforms of ONNX ops: index computations shared by `to_nengo` and the scripts it generates.

A script written by `onnxlab.snn.codegen` imports exactly these names (`SCRIPT_HELPERS`), so this
module is kept small and stable: each function takes shapes (per sample, channels-first, as in
the ONNX file) and constants, and returns an array or a ``nengo`` transform. Every tensor on the
Nengo side is flat, in ONNX's row-major order, so a structural op (transpose, pooling, padding,
concatenation, selection, reduction) is a sparse matrix from one flat vector to another — except a
(C, H, W) tensor that `to_nengo` keeps channels-last (flat in (H, W, C) order, as a channels-last
``nengo.Convolution`` reads and writes it): the per-element constants of such a tensor are made with
``channels_last=True``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np


def _sparse(out_size: int, in_size: int, rows: np.ndarray, cols: np.ndarray, values: Any = 1.0):
    import nengo

    init = np.broadcast_to(np.asarray(values, np.float64), np.shape(rows)).copy()
    return nengo.Sparse((int(out_size), int(in_size)), indices=np.stack([rows, cols], axis=1), init=init)


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every constant of an ONNX file by name, external data included, after the rewrites `to_nengo` makes
    (`onnxlab.graph.simplify`: constant computations done, BatchNorms folded into their convolutions)."""
    from onnxlab.formats import load_model
    from onnxlab.graph import constants, simplify

    return constants(simplify(load_model(path, check=False)))


def selection_transform(out_size: int, in_size: int, index: np.ndarray):
    """Sparse transform with ``out[i] = in[index[i]]``."""
    return _sparse(out_size, in_size, np.arange(out_size), np.asarray(index))


def transpose_index(shape: tuple[int, ...], perm: list[int]) -> np.ndarray:
    """Flat index with ``out[i] = in[index[i]]`` for a transpose of per-sample ``shape`` by ``perm``."""
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(perm).ravel()


def transpose_transform(shape: tuple[int, ...], perm: list[int]):
    """Sparse transform permuting a flat tensor of per-sample ``shape`` by ``perm`` (sample axes)."""
    index = transpose_index(shape, perm)
    return selection_transform(index.size, index.size, index)


def sparse_product(outer: Any, inner: Any):
    """The sparse transform ``outer @ inner`` of two ``nengo.Sparse`` transforms applied one after the other
    (``inner`` first): e.g. a transpose folded into the pooling that reads it."""
    import nengo
    import scipy.sparse

    def matrix(t):
        return scipy.sparse.coo_matrix((t.init.data, (t.init.indices[:, 0], t.init.indices[:, 1])), shape=t.init.shape)

    product = (matrix(outer) @ matrix(inner)).tocoo()
    rows, cols, data = product.row, product.col, product.data
    n = product.shape[0]
    if product.shape == (n, n) and len(data) != n and np.all(data == 1):
        # NengoDL 3.6's identity test (graph_optimizer.remove_identity_muls) compares such a matrix's (nnz, 2)
        # indices with (n, 2) ones and fails; one explicit zero entry makes it stop at the values instead
        rows, cols, data = np.append(rows, 0), np.append(cols, 0), np.append(data, 0.0)
    return nengo.Sparse(product.shape, indices=np.stack([rows, cols], axis=1), init=data)


def dense_after_selection(init: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(out, in) matrix ``W'`` with ``W' @ x == init @ x[index]``, for a permutation ``index``."""
    return np.ascontiguousarray(np.asarray(init)[:, np.argsort(index)])


def pad_index(shape: tuple[int, ...], pads: list[int], mode: str = "constant") -> np.ndarray:
    """Flat index of ONNX ``Pad`` on per-sample ``shape``: ``out[i] = in[index[i]]``, -1 where a constant goes.

    ``pads`` are ONNX's (begin_0, ..., begin_k, end_0, ..., end_k) over the sample axes; ``mode`` is
    ``constant``, ``reflect``, ``edge`` or ``wrap`` (numpy's ``symmetric`` is not an ONNX mode).
    """
    k = len(shape)
    widths = list(zip(pads[:k], pads[k:]))
    index = np.arange(int(np.prod(shape))).reshape(shape)
    if mode == "constant":
        return np.pad(index, widths, mode="constant", constant_values=-1).ravel()
    return np.pad(index, widths, mode=mode).ravel()


def pad_transform(shape: tuple[int, ...], pads: list[int], mode: str = "constant"):
    """Sparse transform of ``Pad`` (the constant itself, if not zero, is a separate bias)."""
    index = pad_index(shape, pads, mode)
    rows = np.flatnonzero(index >= 0)
    return _sparse(index.size, int(np.prod(shape)), rows, index[rows])


def pad_constant(shape: tuple[int, ...], pads: list[int], value: float) -> np.ndarray:
    """The padded positions of a constant-mode ``Pad`` filled with ``value`` (zeros elsewhere), flat."""
    return np.where(pad_index(shape, pads, "constant") < 0, float(value), 0.0)


def pool_windows(shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
                 pads: tuple[int, int, int, int] = (0, 0, 0, 0), out_hw: tuple[int, int] | None = None):
    """The windows of a 2-D pooling of (C, H, W): ``(out_shape, windows)``.

    ``windows[(i, j)]`` is the (C, n) array of flat input indices inside output position (i, j)'s
    window, padding excluded, and the window's full size counting padding (``kh * kw``, less where a
    ceil-mode window runs past the padded input). ``pads`` are ONNX's (top, left, bottom, right).
    """
    c, h, w = shape
    top, left, bottom, right = pads
    if out_hw is None:
        out_hw = ((h + top + bottom - kernel[0]) // strides[0] + 1, (w + left + right - kernel[1]) // strides[1] + 1)
    index = np.arange(c * h * w).reshape(shape)
    windows = {}
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            r1, c1 = min(r0 + kernel[0], h + bottom), min(c0 + kernel[1], w + right)
            full = (r1 - r0) * (c1 - c0)
            windows[i, j] = index[:, max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)].reshape(c, -1), full
    return (c, *out_hw), windows


def pool_transform(shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
                   pads: tuple[int, int, int, int] = (0, 0, 0, 0), count_include_pad: bool = False,
                   out_hw: tuple[int, int] | None = None):
    """Sparse transform averaging (C, H, W) over ``kernel`` windows with ``strides`` and ``pads``.

    With ``count_include_pad`` a window divides by its full size (padding counts as zeros);
    otherwise by the number of input elements it covers, as ONNX ``AveragePool`` defaults to.
    """
    out_shape, windows = pool_windows(shape, kernel, strides, pads, out_hw)
    out_index = np.arange(int(np.prod(out_shape))).reshape(out_shape)
    rows, cols, values = [], [], []
    for (i, j), (window, full) in windows.items():
        count = window.shape[1]
        rows.append(np.repeat(out_index[:, i, j], count))
        cols.append(window.ravel())
        values.append(np.full(window.size, 1.0 / (full if count_include_pad else max(count, 1))))
    return _sparse(int(np.prod(out_shape)), int(np.prod(shape)), np.concatenate(rows), np.concatenate(cols),
                   np.concatenate(values))


def pool_kernel(channels: int, kernel: tuple[int, int]) -> np.ndarray:
    """Kernel (kh, kw, channels, channels) of a ``nengo.Convolution`` that averages each channel over a
    ``kernel`` window: the identity over channels divided by the window's size at every tap (how
    ``nengo_dl.Converter`` pools). NengoDL ran it faster than `pool_transform`'s sparse copy at every channel count
    tried (4 to 64); it computes the pooling wherever every window divides by its full size."""
    taps = int(np.prod(kernel))
    return np.broadcast_to(np.eye(channels) / taps, (*kernel, channels, channels)).copy()


def is_pool_kernel(kernel: np.ndarray) -> bool:
    """True if ``kernel`` (kh, kw, in, out), a Nengo convolution kernel, is exactly `pool_kernel`'s."""
    kernel = np.asarray(kernel)
    return (kernel.ndim == 4 and kernel.shape[2] == kernel.shape[3]
            and np.array_equal(kernel, pool_kernel(kernel.shape[2], kernel.shape[:2]).astype(kernel.dtype)))


def reduce_mean_transform(shape: tuple[int, ...], axes: list[int], mean: bool = True):
    """Sparse transform of ``ReduceMean`` (or ``ReduceSum``, ``mean=False``) over sample ``axes``."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    moved = np.moveaxis(index, axes, list(range(len(shape) - len(axes), len(shape))))
    groups = moved.reshape(-1, int(np.prod([shape[a] for a in axes])))
    rows = np.repeat(np.arange(len(groups)), groups.shape[1])
    return _sparse(len(groups), index.size, rows, groups.ravel(), 1.0 / groups.shape[1] if mean else 1.0)


def concat_transform(shapes: list[tuple[int, ...]], axis: int, part: int):
    """Sparse transform placing input ``part`` of a concatenation of ``shapes`` along sample ``axis``."""
    out_shape = np.concatenate([np.empty(s) for s in shapes], axis=axis).shape
    layout_index = np.arange(int(np.prod(out_shape))).reshape(out_shape)
    splits = np.cumsum([s[axis] for s in shapes])[:-1]
    block = np.split(layout_index, splits, axis=axis)[part]
    size = int(np.prod(shapes[part]))
    return _sparse(layout_index.size, size, block.ravel(), np.arange(size))


def split_index(shape: tuple[int, ...], axis: int, sizes: list[int], part: int) -> np.ndarray:
    """Flat input index of output ``part`` of a ``Split`` of per-sample ``shape`` along ``axis``."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    return np.split(index, np.cumsum(sizes)[:-1], axis=axis)[part].ravel()


def scale_transform(gains: np.ndarray):
    """Sparse diagonal transform multiplying each element by ``gains``."""
    n = len(gains)
    return _sparse(n, n, np.arange(n), np.arange(n), gains)


def onnx_order_index(shape: tuple[int, int, int]) -> np.ndarray:
    """Flat index ``out[i] = in[index[i]]`` that puts a (C, H, W) tensor held channels-last, in (H, W, C)
    order, back in ONNX order."""
    c, h, w = shape
    return transpose_index((h, w, c), [2, 0, 1])


def broadcast_flat(value: np.ndarray, shape: tuple[int, ...], channels_last: bool = False) -> np.ndarray:
    """``value`` broadcast (numpy rules) to per-sample ``shape``, flat, float64; ``channels_last``: a (C, H, W)
    ``shape`` flattened in (H, W, C) order."""
    full = np.broadcast_to(np.asarray(value, np.float64), shape)
    return (np.moveaxis(full, 0, -1) if channels_last else full).ravel().copy()


def bias_column(value: np.ndarray, shape: tuple[int, ...], channels_last: bool = False) -> np.ndarray:
    """``value`` broadcast to per-sample ``shape``, as an (n, 1) transform from a constant node."""
    return broadcast_flat(value, shape, channels_last)[:, None]


def channel_bias(value: np.ndarray, shape: tuple[int, ...], channels_last: bool = False) -> np.ndarray:
    """A per-channel vector (C,) broadcast over (C, *spatial), as an (n, 1) transform (a Conv bias)."""
    value = np.asarray(value)
    return bias_column(value.reshape((-1,) + (1,) * (len(shape) - 1)), shape, channels_last)


def broadcast_neurons(value: np.ndarray, shape: tuple[int, ...], channels_last: bool = False) -> np.ndarray:
    """Per-neuron gain or bias: ``value`` broadcast to ``shape``, flat, float64."""
    return broadcast_flat(np.asarray(value).astype(np.float64), shape, channels_last)


def folded_bias(bias: np.ndarray, gain: np.ndarray, shape: tuple[int, ...], columns: list[np.ndarray],
                channels_last: bool = False) -> np.ndarray:
    """An ensemble's bias with the constant input ``c`` (the sum of ``columns``) folded in: ``bias + gain * c``.

    A neuron computes J = gain * (x + c) + bias = gain * x + (bias + gain * c), so the constant needs no
    connection (NengoDL would add it, times the gain, at every step). Per neuron, flat, computed in float64 and
    rounded to float32 — what NengoDL simulates and what an ONNX-SNN file stores — so that `from_nengo` writes it
    back exactly.
    """
    constant = np.sum([np.asarray(c, np.float64).ravel() for c in columns], axis=0)
    folded = broadcast_neurons(bias, shape, channels_last) + broadcast_neurons(gain, shape, channels_last) * constant
    return folded.astype(np.float32).astype(np.float64)


def batch_norm_gains(scale: np.ndarray, var: np.ndarray, eps: float, shape: tuple[int, ...],
                     channels_last: bool = False) -> np.ndarray:
    """Inference batch norm's per-element gains ``scale / sqrt(var + eps)`` over per-sample ``shape`` (C, ...)."""
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return broadcast_flat(a.reshape((-1,) + (1,) * (len(shape) - 1)), shape, channels_last)


def batch_norm_offsets(scale: np.ndarray, offset: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
                       shape: tuple[int, ...]) -> np.ndarray:
    """Inference batch norm's per-channel offsets ``offset - mean * scale / sqrt(var + eps)``, broadcastable to ``shape``."""
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return (np.asarray(offset, np.float64) - np.asarray(mean, np.float64) * a).reshape((-1,) + (1,) * (len(shape) - 1))


#: What a generated script imports from this module.
SCRIPT_HELPERS = ("batch_norm_gains", "batch_norm_offsets", "bias_column", "broadcast_flat", "broadcast_neurons",
                  "channel_bias", "concat_transform", "dense_after_selection", "folded_bias", "load_weights",
                  "onnx_order_index", "pad_constant", "pad_index", "pad_transform", "pool_kernel", "pool_transform",
                  "reduce_mean_transform", "scale_transform", "selection_transform", "sparse_product", "split_index",
                  "transpose_index", "transpose_transform")
