"""``Linear``: ``nn.Linear`` whose float32 CPU matmuls go to oneDNN instead of MKL.

On AMD CPUs MKL's SGEMM takes its AVX2 path, while oneDNN uses AVX-512. Measured on this
project's Zen machine, one thread, GPT-2-small shapes with our weight layout (the checkpoint's
``[in, out]`` tensors viewed as ``[out, in]``): at 32 rows ``F.linear`` (MKL) runs at 95-100
GFLOP/s and oneDNN at 220-235; at 4-8 rows 45-70 against 115-195. At one row, on a plain
weight, MKL's GEMV is as fast or faster, so :func:`linear` keeps that case; on a weight
packed into oneDNN's blocked layout (:meth:`Linear.pack`, what the engine uses) oneDNN is
faster at one row too. oneDNN's results are bitwise the same for a row whether the batch has
2 rows or 128 (1 to 128 on a packed weight; checked for every GPT-2 shape, 1 and 2 threads),
which the batch-invariant engine relies on; MKL has three regimes (1, 2-3, >= 4 rows).

bfloat16 takes this path only with packed weights (plain bfloat16 matmuls already go to
oneDNN inside torch; the blocked copy made batch-1 decode 1.3-1.45x and batch 32 1.25x
faster). Everything else stays ``F.linear``: float16 (no oneDNN kernel here), other devices,
and any call that needs a gradient (the oneDNN op has no autograd formula).
"""

from __future__ import annotations

import os

# torch's CPU allocator puts tensors of 2 MB and more on transparent huge pages when this is
# set (read at its first such allocation, so setting it after `import torch` still works).
# The blocked weights are then read through 2 MB pages: batch-1 decode, bound by reading
# every weight, measured 49-58 tok/s over separate runs without it and 55-59 with it. A value
# the user set (0 included) is kept. The KV cache is allocated apart (see engine.KVCache).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_onednn_ok: bool | None = None


def onednn_available() -> bool:
    """Whether float32 CPU matmuls can go to oneDNN in this torch build (checked once).

    >>> isinstance(onednn_available(), bool)
    True
    """
    global _onednn_ok
    if _onednn_ok is None:
        _onednn_ok = False
        if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            try:
                x, w = torch.ones(2, 3), torch.ones(4, 3)
                y = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
                _onednn_ok = bool(torch.equal(y, torch.full((2, 4), 3.0)))
            except RuntimeError:
                pass
    return _onednn_ok


# `torch.backends.mkldnn.enabled` without the module attribute lookup (per matmul call).
_mkldnn_enabled = getattr(torch._C, "_get_mkldnn_enabled", lambda: torch.backends.mkldnn.enabled)

# Dtypes whose packed (blocked) weights oneDNN multiplies; plain bfloat16 weights already go
# to oneDNN inside torch, so only packed ones take this module's path in bfloat16.
_PACKABLE = (torch.float32, torch.bfloat16)


def _fast_path(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    min_rows: int = 2,
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
) -> bool:
    """Whether this call may go to oneDNN: a dtype of ``dtypes`` on the CPU, enough rows, no
    gradient."""
    return (
        x.dtype in dtypes
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.numel() >= min_rows * x.shape[-1] > 0
        and not (torch.is_grad_enabled() and _needs_grad(x, weight, bias))
        and torch.backends.mkldnn.enabled
        and onednn_available()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where that is faster and exact to use.

    >>> x, w = torch.ones(4, 3), torch.ones(2, 3)
    >>> linear(x, w, None).tolist() == F.linear(x, w).tolist()
    True
    """
    if _fast_path(x, weight, bias):
        return _onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def padded_rows(m: int) -> int:
    """The row count a ``m``-row matmul is run at: ``m`` up to 32, then rounded up to 8 steps
    per power of two (at most 1/8 of the rows wasted).

    oneDNN builds and caches a kernel per shape; prefill sizes vary with every prompt mix, and
    without this a long job's memory grew by 12 MB per 1,000 prompts.

    >>> [padded_rows(m) for m in (1, 32, 33, 100, 1000)]
    [1, 32, 36, 104, 1024]
    """
    if m <= 32:
        return m
    step = 1 << (m.bit_length() - 4)
    return -(-m // step) * step


def _onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False
) -> torch.Tensor:
    op = torch.ops.mkldnn._linear_pointwise
    attr, algo = ("gelu", "tanh") if gelu else ("none", "")
    if x.dim() == 2 and x.shape[0] <= 32:  # a decode step's rows: no reshape, no padding
        return op(x, weight, bias, attr, [], algo)
    rows = x.reshape(-1, x.shape[-1])
    m = rows.shape[0]
    padded = padded_rows(m)
    if padded != m:
        # Extra zero rows: oneDNN's result for a row does not depend on the other rows.
        rows = torch.cat([rows, rows.new_zeros(padded - m, rows.shape[1])])
    y = op(rows, weight, bias, attr, [], algo)
    return y[:m].reshape(*x.shape[:-1], y.shape[-1])


def _needs_grad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)


def _stamp(w: torch.Tensor) -> tuple[Any, ...] | None:
    """What identifies the values of ``w``: storage, in-place version, dtype, device, shape."""
    try:
        return (w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))
    except RuntimeError:  # an inference-mode tensor has no version counter
        return None


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose forward is :func:`linear`.

    :meth:`pack` adds a copy of the weight in oneDNN's blocked layout, used for every float32
    CPU matmul without a gradient while the weight is unchanged.

    >>> layer = Linear(3, 2)
    >>> with torch.no_grad():
    ...     torch.allclose(layer(torch.ones(4, 3)), torch.ones(4, 3) @ layer.weight.T + layer.bias)
    True
    """

    _packed: tuple[torch.Tensor, tuple[Any, ...]] | None = None

    def pack(self) -> bool:
        """Keeps a blocked copy of a float32 or bfloat16 CPU weight (same size again); False if
        not used.

        Measured on GPT-2-small shapes, one thread: at one row (batch-1 decode, bound by
        reading the weights) oneDNN streams the blocked copy at 38-43 GB/s against 17-28 GB/s
        for MKL's GEMV on the plain tensors; at 32 rows the ``[50257, 768]`` LM head runs at
        ~180 GFLOP/s blocked against ~130 plain. A row's result is the same whatever the
        number of rows, one included. The copy is dropped as soon as the weight is replaced,
        modified in place, or moved. :func:`pack_model` packs a whole model.

        >>> layer = Linear(3, 2)
        >>> layer.pack() == onednn_available()
        True
        """
        if self._live_packed() is not None:
            return True
        w, stamp = self.weight, _stamp(self.weight)
        if stamp is None or w.dtype not in _PACKABLE or w.device.type != "cpu":
            return False
        if not onednn_available():
            return False
        with torch.no_grad():
            self._packed = (torch.ops.mkldnn._reorder_linear_weight(w.detach(), 32), stamp)
        return True

    def _live_packed(self) -> torch.Tensor | None:
        """The blocked copy, or None; a copy made before the weight changed is dropped."""
        packed = self._packed
        if packed is not None and packed[1] != _stamp(self.weight):
            self._packed = packed = None
        return None if packed is None else packed[0]

    def _packed_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """The blocked copy if this call may use it: :func:`_fast_path`'s conditions, less
        those that packing already established (dtype, device, oneDNN), with cheaper calls
        (a decode step of GPT-2 small makes 49 of these calls)."""
        packed = self._live_packed()
        if packed is None:
            return None
        w, b = self.weight, self.bias
        if (
            x.dtype != w.dtype
            or (b is not None and b.dtype != w.dtype)
            or x.device.type != "cpu"
            or x.numel() == 0
            or (torch.is_grad_enabled() and _needs_grad(x, w, b))
            or not _mkldnn_enabled()
        ):
            return None
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_for(x)
        if packed is not None:
            return _onednn_linear(x, packed, self.bias)
        return linear(x, self.weight, self.bias)

    def forward_tanh_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """``F.gelu(self(x), approximate="tanh")``, fused into the matmul on the packed path.

        oneDNN applies the GELU to each block of the output while it is in cache instead of a
        second pass over memory (measured: 766 -> 678 us for GPT-2's ``c_fc`` at 32 rows; the
        values differ from torch's GELU by at most ~1 ulp).

        >>> layer, x = Linear(3, 2), torch.ones(4, 3)
        >>> with torch.no_grad():
        ...     torch.allclose(layer.forward_tanh_gelu(x), F.gelu(layer(x), approximate="tanh"))
        True
        """
        packed = self._packed_for(x)
        if packed is not None:
            return _onednn_linear(x, packed, self.bias, gelu=True)
        return F.gelu(self(x), approximate="tanh")


def pack_model(model: nn.Module, release: bool = True) -> int:
    """Packs every :class:`Linear` of ``model``; returns how many were packed.

    With ``release``, the originals' pages are then handed back to the kernel where they are
    mapped from the checkpoint file (:mod:`gpt_hybrid.pages`): the blocked copies replace them
    in memory instead of doubling it. The parameters stay valid (read again on demand).

    >>> pack_model(nn.Sequential(Linear(3, 2), Linear(2, 2))) == 2 * onednn_available()
    True
    """
    from gpt_hybrid.pages import file_mappings, release_file_pages

    maps = file_mappings() if release else []
    # A weight an embedding shares (GPT-2's tied LM head) is still read, a few rows a step.
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    packed, fresh = [], 0
    for m in model.modules():
        if not isinstance(m, Linear):
            continue
        was = m._live_packed() is not None
        if m.pack():
            packed.append(m.weight)
            if release and not was:
                fresh += 1
                # One weight at a time, so that the peak is the copies plus one original, not
                # both models.
                release_file_pages([m.weight], maps, id(m.weight) in embedded)
    if fresh:
        # Again for all: reading one weight maps some pages of its neighbours in the file
        # (fault-around).
        for w in packed:
            release_file_pages([w], maps, id(w) in embedded)
    return len(packed)
