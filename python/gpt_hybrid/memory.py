"""Memory a generation run needs, memory the machine has left, and how many slots fit.

The engine allocates one KV cache per run, before its first prefill, sized for the run's slots
and its longest sequence. Past that point a run allocates only small, bounded buffers, so the
one moment an out-of-memory kill can be prevented is before the cache exists: the engine asks
:func:`plan_slots` how many slots fit in the memory that is actually available and then either
runs with fewer slots (a warning says so) or, when asked to be strict, raises
:class:`CacheMemoryError` naming what it needed, what was there, and what to change.

Available memory is what this process may still take before the kernel (or the container's
limit) kills it: on the CPU the smaller of ``MemAvailable`` from ``/proc/meminfo`` and every
memory cgroup limit above the process (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) minus
its usage, reclaimable page cache (``inactive_file``) counted as free, as the kernel would;
on CUDA, ``torch.cuda.mem_get_info``'s free bytes plus what PyTorch's caching allocator holds
unused. Anywhere else (macOS, MPS) it is unknown and nothing is checked.

>>> from gpt_hybrid.model import GPT2Config
>>> need = RunMemory.estimate(GPT2Config(n_layer=12, n_embd=768, n_head=12), max_len=1024)
>>> round(need.per_slot / 2**20)  # 12 layers x (k, v) x 1024 x 768 x 4 bytes, + logits
73
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Limits at or above this mean "no limit" (cgroup v1 writes 2**63 rounded down to a page).
_UNLIMITED = 1 << 60
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")
_PROC_MEMINFO = Path("/proc/meminfo")


class CacheMemoryError(MemoryError):
    """A run's KV cache would not fit in the memory available; raised before allocating it."""


class CacheShrinkWarning(UserWarning):
    """A run got fewer slots than ``max_batch_size`` because the full cache would not fit."""


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _stat_value(path: Path, keys: tuple[str, ...]) -> int:
    """The first of ``keys`` found in a cgroup ``memory.stat`` file, else 0."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(maxsplit=1) for line in lines if " " in line)
    for key in keys:
        if key in values and values[key].strip().isdigit():
            return int(values[key])
    return 0


def _cgroup_dirs() -> list[tuple[Path, str]]:
    """This process's memory cgroup and its ancestors: ``(dir, "v1" | "v2")``, leaf first."""
    try:
        lines = _PROC_CGROUP.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            base, kind = _CGROUP_ROOT, "v2"
            if not (base / "cgroup.controllers").exists():
                base = _CGROUP_ROOT / "unified"
        elif "memory" in controllers.split(","):
            base, kind = _CGROUP_ROOT / "memory", "v1"
        else:
            continue
        d = base / rel.lstrip("/")
        while True:  # a limit on any ancestor applies too
            out.append((d, kind))
            if d == base or base not in d.parents:
                break
            d = d.parent
    return out


def cgroup_available_bytes() -> int | None:
    """Bytes left under the tightest memory cgroup limit above this process; None if none."""
    best = None
    for d, kind in _cgroup_dirs():
        if kind == "v2":
            limit, usage = _read_int(d / "memory.max"), _read_int(d / "memory.current")
            reclaimable = _stat_value(d / "memory.stat", ("inactive_file",))
        else:
            limit = _read_int(d / "memory.limit_in_bytes")
            usage = _read_int(d / "memory.usage_in_bytes")
            reclaimable = _stat_value(d / "memory.stat", ("total_inactive_file", "inactive_file"))
        if limit is None or usage is None or limit >= _UNLIMITED:
            continue
        left = max(0, limit - usage + reclaimable)
        best = left if best is None else min(best, left)
    return best


def meminfo_available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes; None where there is no such file."""
    try:
        for line in _PROC_MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Bytes a new allocation on ``device`` can still take; None when it cannot be known.

    Example:
        >>> available_bytes("cpu") is None or available_bytes("cpu") > 0
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks PyTorch's caching allocator holds but no tensor uses are free to us too.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    if device.type != "cpu" or os.name != "posix":
        return None
    found = [x for x in (meminfo_available_bytes(), cgroup_available_bytes()) if x is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class RunMemory:
    """What one run allocates: ``fixed + per_slot * rows`` bytes, at most.

    Attributes:
        per_slot: one cache row (keys and values of every layer over ``max_len`` positions)
            plus that row's logits buffers (the model's logits, their float32 copy and the
            sampler's per-row work arrays).
        fixed: the prefill of the longest prompt or of a group of prompts prefilled together
            (attention scores and MLP activations).
    """

    per_slot: int
    fixed: int

    @classmethod
    def estimate(
        cls,
        config: Any,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        prompt_len: int | None = None,
        prefill_tokens: int = 1024,
    ) -> RunMemory:
        """The estimate for a model ``config`` and a cache of ``max_len`` positions per row.

        Example:
            >>> from gpt_hybrid.model import GPT2Config
            >>> RunMemory.estimate(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10), 4)
            RunMemory(per_slot=416, fixed=262144)
        """
        item = torch.empty((), dtype=dtype).element_size()
        kv = 2 * config.n_layer * max_len * config.n_embd * item  # layers x (k, v) x T x C
        # Logits in the model's dtype, a float32 copy for the sampler, its float32/u32 work rows.
        logits = config.vocab_size * (item + 4 + 8)
        t = prompt_len if prompt_len is not None else max_len
        # Prefill: one prompt of T tokens, or a padded group of N prompts with N x T at most
        # ``prefill_tokens`` (the engine's group size): float32 scores (N, n_head, T, T) and the
        # widest activations (N x T, 4C) + qkv.
        tokens = max(t, prefill_tokens)
        prefill = 4 * (config.n_head * t * tokens + tokens * (config.inner_dim + 3 * config.n_embd))
        return cls(per_slot=kv + logits, fixed=prefill)

    def total(self, rows: int) -> int:
        """Bytes for ``rows`` cache rows."""
        return self.fixed + self.per_slot * rows


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def plan_slots(
    need: RunMemory,
    slots: int,
    min_rows: int,
    available: int | None,
    *,
    strict: bool = False,
    utilization: float = 0.9,
    what: str = "",
) -> int:
    """How many slots a run can have: ``slots`` if they fit, fewer with a warning, or raise.

    The cache has ``max(slots, min_rows)`` rows (``min_rows`` pads small batch-invariant
    runs). It may use ``utilization`` of the available bytes; the rest is headroom for what
    the estimate leaves out (Python objects, allocator slack, other threads' runs).

    Args:
        need: the run's :class:`RunMemory`.
        slots: the slots the run wants (``min(max_batch_size, sequences)``).
        min_rows: the fewest cache rows the engine accepts.
        available: :func:`available_bytes`, or None to skip the check.
        strict: raise :class:`CacheMemoryError` instead of shrinking.
        utilization: the fraction of ``available`` the run may take.
        what: the run, for messages (e.g. "12 sequences of up to 1024 tokens").

    Raises:
        CacheMemoryError: not even ``min_rows`` rows fit, or ``strict`` and ``slots`` do not.

    Example:
        >>> plan_slots(RunMemory(per_slot=100, fixed=0), 4, 1, available=1000)
        4
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     plan_slots(RunMemory(per_slot=100, fixed=0), 16, 1, available=1000)
        9
        >>> caught[0].category.__name__
        'CacheShrinkWarning'
    """
    if available is None:
        return slots
    budget = int(available * utilization)
    rows = max(slots, min_rows)
    if need.total(rows) <= budget:
        return slots
    fit = (budget - need.fixed) // need.per_slot if budget > need.fixed else 0
    head = (
        f"the KV cache for {what or f'{slots} slots'} needs {_mib(need.total(rows))} "
        f"({rows} rows x {_mib(need.per_slot)}), but only {_mib(available)} is available "
        f"({utilization:.0%} of it may be used: {_mib(budget)})"
    )
    if fit < max(1, min_rows):
        raise CacheMemoryError(
            f"{head}; not even {max(1, min_rows)} row(s) fit. Shorten the context "
            "(shorter prompts or a smaller max_new_tokens), use a smaller dtype "
            "(bfloat16/float16), or free memory."
        )
    if strict:
        raise CacheMemoryError(
            f"{head}. Pass max_batch_size={fit} or less, shorten prompts/max_new_tokens, or "
            "use a smaller dtype; or allow the engine to shrink the batch (strict_memory=False)."
        )
    warnings.warn(
        f"{head}: running with {fit} slots instead of {slots} (fewer sequences "
        "decoded at a time). Set max_batch_size to silence this, or strict_memory=True to raise.",
        CacheShrinkWarning,
        stacklevel=4,
    )
    return int(fit)
