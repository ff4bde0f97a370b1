"""Batched sampling of next tokens from logits, with Hugging Face's semantics.

``sample`` draws one token per row of a ``[B, V]`` logits matrix; ``probs`` returns the final
distribution it draws from. The work runs in Rust (``gpt_hybrid._native``), rows in parallel
and without the GIL; this module turns tensors, dtypes, scalar-or-per-row parameters and
histories into the flat arrays the native code takes.

Randomness is counter-based (Philox4x32-10 keyed by ``(seed, sequence, step)``): a seeded
row draws the same token whatever else is in the batch and wherever it sits. Rows without a
seed take a fresh 64-bit seed from a global generator that ``manual_seed`` resets.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from gpt_hybrid import _native
from gpt_hybrid.sampling_params import MAX_U64, check_float, check_int

_FLOAT_PARAMS = (
    "temperature",
    "top_p",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)
_NEUTRAL = {"repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


class _SeedStream:
    """The global source of seeds for rows that have none (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = np.random.default_rng(seed)

    def draw(self, n: int) -> np.ndarray:
        # The same numbers as ``integers(0, MAX_U64, size=n, dtype=np.uint64, endpoint=True)``
        # (numpy returns the raw 64-bit outputs for the full range; tests/test_sampler_fast.py
        # checks it), at a tenth of its call overhead.
        with self._lock:
            return self._rng.bit_generator.random_raw(n)


_seeds = _SeedStream()


def manual_seed(seed: int) -> None:
    """Seeds the generator that rows without their own ``seed`` draw from.

    Args:
        seed: Any non-negative integer.

    >>> import numpy as np
    >>> x = np.zeros((1, 5), dtype=np.float32)
    >>> manual_seed(0); a = sample(x)
    >>> manual_seed(0); b = sample(x)
    >>> bool((a == b).all())
    True
    """
    _seeds.reseed(check_int("seed", seed))


@dataclass(frozen=True)
class SampleOutput:
    """What ``sample(..., return_logprobs=True)`` returns; every array has one row per input row.

    Attributes:
        token_ids: int64 ``[B]``, the chosen tokens.
        logprobs: float32 ``[B]``, each chosen token's log-probability under the final
            distribution it was drawn from (after penalties, temperature and filters).
        raw_logprobs: float32 ``[B]``, the same under softmax of the logits as given.
        top_token_ids: int64 ``[B, n]``, the ``n = num_logprobs`` most likely tokens of the
            raw distribution, most likely first.
        top_logprobs: float32 ``[B, n]``, their raw log-probabilities.
    """

    token_ids: np.ndarray
    logprobs: np.ndarray
    raw_logprobs: np.ndarray
    top_token_ids: np.ndarray
    top_logprobs: np.ndarray


def _as_logits(logits: Any) -> np.ndarray:
    """A C-contiguous float32 ``[B, V]`` view (no copy when it already is one)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(logits, torch.Tensor):
        t = logits.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_floating_point():
            raise TypeError(f"logits must be floating point, got {t.dtype}")
        if t.dtype != torch.float32:
            t = t.float()  # float16 / bfloat16 / float64 (numpy has no bfloat16)
        array = t.numpy()
    elif isinstance(logits, np.ndarray):
        array = logits
    else:
        array = np.asarray(logits)
    if array.dtype != np.float32:
        if array.dtype.kind != "f":
            raise TypeError(f"logits must be floating point, got dtype {array.dtype}")
        array = array.astype(np.float32)
    if array.ndim != 2:
        raise ValueError(f"logits must be 2-D [batch, vocab], got shape {tuple(array.shape)}")
    if array.shape[1] == 0:
        raise ValueError("logits have an empty vocabulary axis (shape [B, 0])")
    return np.ascontiguousarray(array)


def _per_row(name: str, value: Any, rows: int) -> list[Any]:
    """``value`` broadcast to ``rows`` entries (a scalar, or a sequence of one per row)."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return [value.item()] * rows
        value = value.tolist()
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != rows:
            raise ValueError(f"{name} has {len(value)} values for {rows} rows")
        return list(value)
    return [value] * rows


def _is_per_row(value: Any) -> bool:
    """Whether a parameter holds one value per row (rather than one for all)."""
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor) and value.ndim > 0


def _column(name: str, value: Any, rows: int, check: Any) -> Any:
    """A checked scalar (numpy broadcasts it into the column) or a checked list of one per row."""
    if not _is_per_row(value):
        return check(name, value.item() if isinstance(value, np.ndarray) else value)
    return _check_rows(name, _per_row(name, value, rows), check)


def _check_u64(name: str, value: Any) -> int:
    return check_int(name, value, maximum=MAX_U64)


def _check_top_k(name: str, value: Any) -> int:
    # Any top_k at or above the vocabulary size keeps every token, so a huge one (found by
    # tests/test_fuzz_python.py: 2**64 overflowed the uint64 column) means the same as MAX_U64.
    return min(check_int(name, value), MAX_U64)


def _check_rows(name: str, values: list[Any], check: Any) -> list[Any]:
    """Checks every entry, naming the row when the parameter was given per row."""
    if values and all(v is values[0] for v in values):
        return [check(name, values[0])] * len(values)  # a broadcast scalar
    out = []
    for row, v in enumerate(values):
        try:
            out.append(check(name, v))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e} (row {row})") from None
    return out


def _history(history: Any, rows: int, needed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``history`` as flat uint32 ids and uint64 row offsets (``rows + 1`` of them).

    When no penalty needs it (``needed`` false), only its length is checked.
    """
    empty = np.zeros(0, np.uint32), np.zeros(0, np.uint64)
    if history is None:
        return empty
    if isinstance(history, np.ndarray) and history.ndim == 2:
        seqs: Sequence[Any] = list(history)
    else:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(history, torch.Tensor):
            history = history.cpu().numpy()
            seqs = list(history) if history.ndim == 2 else [history]
        else:
            seqs = list(history)
    if len(seqs) != rows:
        raise ValueError(f"history has {len(seqs)} rows for {rows} rows of logits")
    if not needed:
        return empty
    parts = []
    for row, seq in enumerate(seqs):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(seq, torch.Tensor):
            seq = seq.cpu().numpy()
        ids = np.asarray(seq)
        if ids.size == 0:
            parts.append(np.zeros(0, np.uint32))
            continue
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise TypeError(f"history row {row} must be a sequence of integer token ids")
        if ids.min() < 0 or ids.max() > 2**32 - 1:
            raise ValueError(f"history row {row} holds a token id outside [0, 2**32)")
        parts.append(ids.astype(np.uint32))
    offsets = np.zeros(rows + 1, np.uint64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    return flat, offsets


_F32 = np.dtype(np.float32)
_FLOAT_MAX = sys.float_info.max
_SCALAR = (float, int)


def _sample_scalar(
    logits: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    min_p: Any,
    repetition_penalty: Any,
    presence_penalty: Any,
    frequency_penalty: Any,
    seed: Any,
    step: Any,
    sequence: Any,
) -> np.ndarray | None:
    """``sample``'s common call, or None when it is not one (the general path then runs).

    The common call: C-contiguous float32 ``[B, V]`` logits (a numpy array or a CPU torch
    tensor) and plain Python scalars already in range, no history, no logprobs. At batch 1
    the general path's parameter matrices cost more than the kernel; this one passes the
    scalars as they are. Anything unusual (a wrong type or value included) goes to the
    general path, so that errors are raised, with the same messages, in one place only.
    """
    if type(logits) is not np.ndarray:
        torch = sys.modules.get("torch")
        if torch is None or type(logits) is not torch.Tensor:
            return None
        if not (logits.dtype is torch.float32 and logits.is_cpu):
            return None
        # A view of the tensor's memory, as in _as_logits (detach costs more than the check).
        logits = (logits.detach() if logits.requires_grad else logits).numpy()
    # Exact types: bool, numpy scalars and subclasses take the general path. The chained
    # comparisons reject NaN, and ints too large for a float, as check_float's range does.
    if not (
        logits.dtype is _F32
        and logits.ndim == 2
        and logits.shape[1] > 0
        and logits.flags.c_contiguous
        and type(temperature) in _SCALAR
        and 0 <= temperature <= _FLOAT_MAX
        and type(top_p) in _SCALAR
        and 0 < top_p <= 1
        and type(min_p) in _SCALAR
        and 0 <= min_p <= 1
        and type(repetition_penalty) in _SCALAR
        and 0 < repetition_penalty <= _FLOAT_MAX
        and type(presence_penalty) in _SCALAR
        and -2 <= presence_penalty <= 2
        and type(frequency_penalty) in _SCALAR
        and -2 <= frequency_penalty <= 2
        and type(top_k) is int
        and top_k >= 0
        and type(step) is int
        and 0 <= step <= MAX_U64
        and type(sequence) is int
        and 0 <= sequence <= MAX_U64
        and (seed is None or (type(seed) is int and 0 <= seed <= MAX_U64))
    ):
        return None
    rows = logits.shape[0]
    seeds = None
    if seed is None:
        # One fresh seed per row, drawn as the general path draws them.
        seeds = _seeds.draw(rows)
        seed = 0
    return _native.sample_scalar(
        logits,
        temperature,
        min(top_k, MAX_U64),
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        seed,
        sequence,
        step,
        seeds,
    )


def _prepare(
    logits: Any,
    params: dict[str, Any],
    history: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = _as_logits(logits)
    rows = x.shape[0]
    floats = np.empty((rows, len(_FLOAT_PARAMS)), np.float64)
    for col, name in enumerate(_FLOAT_PARAMS):
        floats[:, col] = _column(name, params[name], rows, check_float)
    ints = np.empty((rows, 4), np.uint64)
    ints[:, 0] = _column("top_k", params["top_k"], rows, _check_top_k)
    seed = params["seed"]
    if seed is None:
        ints[:, 1] = _seeds.draw(rows)
    else:
        if _is_per_row(seed):
            seeds = _per_row("seed", seed, rows)
            missing = [r for r, s in enumerate(seeds) if s is None]
            fresh = iter(_seeds.draw(len(missing)).tolist() if missing else [])
            seed = [next(fresh) if s is None else s for s in seeds]
        ints[:, 1] = _column("seed", seed, rows, _check_u64)
    ints[:, 2] = _column("sequence", params["sequence"], rows, _check_u64)
    ints[:, 3] = _column("step", params["step"], rows, _check_u64)
    penalised = any(
        (floats[:, col] != _NEUTRAL[name]).any()
        for col, name in enumerate(_FLOAT_PARAMS)
        if name in _NEUTRAL
    )
    # The history only matters to the penalties: skip flattening it when they are off.
    ids, offsets = _history(history, rows, needed=bool(penalised))
    return x, floats, ints, ids, offsets


@overload
def sample(
    logits: Any,
    *,
    temperature: float | Sequence[float] = ...,
    top_k: int | Sequence[int] = ...,
    top_p: float | Sequence[float] = ...,
    min_p: float | Sequence[float] = ...,
    repetition_penalty: float | Sequence[float] = ...,
    presence_penalty: float | Sequence[float] = ...,
    frequency_penalty: float | Sequence[float] = ...,
    seed: int | None | Sequence[int | None] = ...,
    step: int | Sequence[int] = ...,
    sequence: int | Sequence[int] = ...,
    history: Any = ...,
    return_logprobs: Literal[False] = ...,
    num_logprobs: int = ...,
) -> np.ndarray: ...


@overload
def sample(
    logits: Any,
    *,
    temperature: float | Sequence[float] = ...,
    top_k: int | Sequence[int] = ...,
    top_p: float | Sequence[float] = ...,
    min_p: float | Sequence[float] = ...,
    repetition_penalty: float | Sequence[float] = ...,
    presence_penalty: float | Sequence[float] = ...,
    frequency_penalty: float | Sequence[float] = ...,
    seed: int | None | Sequence[int | None] = ...,
    step: int | Sequence[int] = ...,
    sequence: int | Sequence[int] = ...,
    history: Any = ...,
    return_logprobs: Literal[True],
    num_logprobs: int = ...,
) -> SampleOutput: ...


def sample(
    logits: Any,
    *,
    temperature: float | Sequence[float] = 1.0,
    top_k: int | Sequence[int] = 0,
    top_p: float | Sequence[float] = 1.0,
    min_p: float | Sequence[float] = 0.0,
    repetition_penalty: float | Sequence[float] = 1.0,
    presence_penalty: float | Sequence[float] = 0.0,
    frequency_penalty: float | Sequence[float] = 0.0,
    seed: int | None | Sequence[int | None] = None,
    step: int | Sequence[int] = 0,
    sequence: int | Sequence[int] = 0,
    history: Any = None,
    return_logprobs: bool = False,
    num_logprobs: int = 0,
) -> np.ndarray | SampleOutput:
    """Draws one token per row of ``logits``.

    Each row goes through repetition/presence/frequency penalties → temperature → top-k →
    top-p → min-p (Hugging Face's order and meaning), then one token is drawn with the
    counter-based generator keyed by ``(seed, sequence, step)``.

    Args:
        logits: ``[B, V]`` float32 numpy array or CPU torch tensor (read without a copy when
            C-contiguous); float16, bfloat16 and float64 are converted.
        temperature: Divides the logits; 0 means greedy (argmax, first on ties).
        top_k: Keep the k largest logits and every logit tied with the k-th; 0 = off.
        top_p: Keep the smallest most-likely set with mass >= top_p; 1 = off.
        min_p: Drop tokens below ``min_p`` times the top probability; 0 = off.
        repetition_penalty: HF's rule on tokens in ``history`` (> 0; 1 = off).
        presence_penalty: Subtracted once from each token in ``history`` ([-2, 2]).
        frequency_penalty: Subtracted per occurrence in ``history`` ([-2, 2]).
        seed: The row's random stream; None takes a seed from the global generator.
        step: The decoding step (the counter of the random stream).
        sequence: Which sequence of a request (for several samples from one prompt).
        history: The token ids each row has seen (prompt and output): a list of B
            sequences, or a ``[B, L]`` integer array. Needed only by the penalties.
        return_logprobs: Return a ``SampleOutput`` with logprobs instead of the ids alone.
        num_logprobs: How many top alternatives ``SampleOutput`` carries per row (needs
            ``return_logprobs=True``).

    Every parameter is either a scalar or a sequence with one value per row.

    Returns:
        int64 numpy array ``[B]`` of token ids, or a ``SampleOutput``.

    Raises:
        TypeError: ``logits`` is not floating point, or a parameter has the wrong type.
        ValueError: wrong shape, a parameter out of range, a row with NaN or +inf, or a row
            with no possible token (all -inf); the message names the row.

    >>> import numpy as np
    >>> logits = np.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    >>> sample(logits, temperature=0).tolist()
    [1, 0]
    >>> sample(logits, top_k=1, seed=7).tolist()
    [1, 0]
    >>> out = sample(logits, temperature=0, return_logprobs=True, num_logprobs=2)
    >>> out.top_token_ids.tolist()
    [[1, 2], [0, 1]]
    """
    if (
        history is None
        and return_logprobs is False
        and type(num_logprobs) is int
        and not num_logprobs
    ):
        ids = _sample_scalar(
            logits,
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            seed,
            step,
            sequence,
        )
        if ids is not None:
            return ids
    params = dict(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        seed=seed,
        step=step,
        sequence=sequence,
    )
    # More alternatives than the vocabulary holds means all of them (and must not overflow).
    n_top = min(check_int("num_logprobs", num_logprobs), MAX_U64)
    if n_top and not return_logprobs:
        raise ValueError("num_logprobs > 0 needs return_logprobs=True")
    x, floats, ints, ids, offsets = _prepare(logits, params, history)
    token_ids, lp, raw_lp, top_ids, top_lp = _native.sample_batch(
        x, floats, ints, ids, offsets, bool(return_logprobs), n_top
    )
    if not return_logprobs:
        return token_ids
    return SampleOutput(token_ids, lp, raw_lp, top_ids, top_lp)


def probs(
    logits: Any,
    *,
    temperature: float | Sequence[float] = 1.0,
    top_k: int | Sequence[int] = 0,
    top_p: float | Sequence[float] = 1.0,
    min_p: float | Sequence[float] = 0.0,
    repetition_penalty: float | Sequence[float] = 1.0,
    presence_penalty: float | Sequence[float] = 0.0,
    frequency_penalty: float | Sequence[float] = 0.0,
    history: Any = None,
) -> np.ndarray:
    """The distribution ``sample`` draws from: filtered, renormalised, float32 ``[B, V]``.

    Tokens removed by the filters have probability 0; each row sums to 1. With
    ``temperature=0`` a row is one-hot at its argmax. Arguments are those of ``sample``.

    >>> import numpy as np
    >>> p = probs(np.log(np.array([[0.5, 0.3, 0.2]], dtype=np.float32)), top_p=0.7)
    >>> np.round(p, 3).tolist()
    [[0.625, 0.375, 0.0]]
    """
    params = dict(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        seed=0,
        step=0,
        sequence=0,
    )
    x, floats, ints, ids, offsets = _prepare(logits, params, history)
    return _native.probs_batch(x, floats, ints, ids, offsets)
