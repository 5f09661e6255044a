"""Every weight remapping between Nengo/Keras layouts and ONNX layouts, in one place.

Nengo (``nengo.Convolution``) and Keras store conv kernels as (kh, kw, in, out) and dense
weights as (in, out); ONNX ``Conv`` wants (out, in, kh, kw), ``Gemm`` with ``transB=1`` wants
(out, in) (``MatMul`` keeps (in, out)). A dense layer after a flatten also needs its rows
permuted when the flatten order changes between channels-last (H, W, C) and channels-first
(C, H, W). Each function has an exact inverse; tests check both with asymmetric shapes.
"""
from __future__ import annotations

import numpy as np
from onnxlab.errors import InvalidArgument


def conv_kernel_to_onnx(kernel: np.ndarray) -> np.ndarray:
    """(kh, kw, in, out) -> (out, in, kh, kw)."""
    _expect_ndim(kernel, 4, "conv kernel (kh, kw, in, out)")
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def conv_kernel_from_onnx(weight: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (kh, kw, in, out)."""
    _expect_ndim(weight, 4, "ONNX Conv weight (out, in, kh, kw)")
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def dense_to_gemm(weight: np.ndarray) -> np.ndarray:
    """Dense (in, out) -> ONNX Gemm ``transB=1`` weight (out, in)."""
    _expect_ndim(weight, 2, "dense weight (in, out)")
    return np.ascontiguousarray(weight.T)


def dense_from_gemm(weight: np.ndarray) -> np.ndarray:
    """ONNX Gemm ``transB=1`` weight (out, in) -> dense (in, out)."""
    _expect_ndim(weight, 2, "Gemm weight (out, in)")
    return np.ascontiguousarray(weight.T)


def flatten_permutation(channels: int, height: int, width: int) -> np.ndarray:
    """Index array p of length C*H*W with ``flat_chw = flat_hwc[p]``.

    Entry i of the channels-first flatten (c, h, w) is entry p[i] of the channels-last
    flatten (h, w, c) of the same feature map.
    """
    return np.arange(channels * height * width).reshape(height, width, channels).transpose(2, 0, 1).ravel()


def dense_rows_hwc_to_chw(weight: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Rows of a dense weight (C*H*W, out) that follows a channels-last flatten, reordered for a channels-first one."""
    _expect_rows(weight, channels * height * width)
    return np.ascontiguousarray(weight[flatten_permutation(channels, height, width)])


def dense_rows_chw_to_hwc(weight: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Inverse of `dense_rows_hwc_to_chw`."""
    _expect_rows(weight, channels * height * width)
    return np.ascontiguousarray(weight[np.argsort(flatten_permutation(channels, height, width))])


def _expect_ndim(array: np.ndarray, ndim: int, what: str) -> None:
    if np.ndim(array) != ndim:
        raise InvalidArgument(f"expected a {what}, got an array of shape {np.shape(array)}")


def _expect_rows(weight: np.ndarray, rows: int) -> None:
    if np.ndim(weight) != 2 or weight.shape[0] != rows:
        raise InvalidArgument(f"expected a dense weight with {rows} rows (C*H*W), got shape {np.shape(weight)}")
