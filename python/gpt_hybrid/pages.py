"""Handing the pages of a memory-mapped tensor back to the kernel once a copy replaces it.

The loader maps the checkpoint (``model.safetensors``) instead of reading it, so a weight's
pages are file pages: after ``Linear.pack`` has read a weight into oneDNN's blocked copy, the
original is no longer read on the hot path, but its pages still count in the process's RSS
(475 MB for GPT-2 small in float32). ``MADV_PAGEOUT`` (Linux 5.4+) asks the kernel to reclaim
them. Nothing is lost: a page read again later is faulted back in from the file (or from swap,
for a page the process had modified), so this only ever trades memory for a later read. It is
applied only to ranges that ``/proc/self/maps`` shows as mappings of a regular file.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

import torch

_MADV_DONTNEED = 4
_MADV_PAGEOUT = 21
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def file_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process mapped from regular files (``/proc/self/maps``).

    >>> isinstance(file_mappings(), list)
    True
    """
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and parts[4] != "0":
                    lo, hi = parts[0].split("-")
                    out.append((int(lo, 16), int(hi, 16)))
    except OSError:
        return []
    return out


def release_file_pages(
    tensors: list[torch.Tensor],
    maps: list[tuple[int, int]] | None = None,
    still_read: bool = False,
) -> int:
    """Asks the kernel to reclaim the file-backed pages of ``tensors``' storages.

    Returns the number of bytes advised (0 where not supported: not Linux, an anonymous or
    non-CPU tensor, an old kernel). The tensors stay valid and unchanged. ``maps``: the
    result of :func:`file_mappings`, to read ``/proc/self/maps`` once for many calls.

    ``still_read``: the tensor is still read now and then (a tied embedding: a few rows per
    step). Its pages are then only unmapped (``MADV_DONTNEED``): they leave the RSS but stay
    in the page cache, so a row read again costs a minor fault, not a read from disk
    (measured: 22 ms per batch-1 run of 32-token prompts with ``MADV_PAGEOUT``).

    >>> release_file_pages([torch.zeros(4)])  # anonymous memory: left alone
    0
    """
    if not sys.platform.startswith("linux"):
        return 0
    if maps is None:
        maps = file_mappings()
    madvise = _madvise()
    if madvise is None:
        return 0
    done = 0
    for t in tensors:
        if t.device.type != "cpu":
            continue
        storage = t.untyped_storage()
        start, end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
        if not any(lo <= start and end <= hi for lo, hi in maps):
            continue
        # Whole pages inside the storage only: its neighbours in the file stay untouched.
        lo, hi = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE
        advice = _MADV_DONTNEED if still_read else _MADV_PAGEOUT
        if hi > lo and madvise(lo, hi - lo, advice) == 0:
            done += hi - lo
    return done


def discard_pages(address: int, nbytes: int) -> int:
    """Frees the whole pages inside ``[address, address + nbytes)`` of private anonymous memory
    (``MADV_DONTNEED``): they read as zeros again and leave the RSS until written. Returns the
    bytes freed (0 where not supported).

    >>> discard_pages(0, 0)
    0
    """
    if not sys.platform.startswith("linux"):
        return 0
    lo, hi = -(-address // _PAGE) * _PAGE, (address + nbytes) // _PAGE * _PAGE
    madvise = _madvise()
    if hi <= lo or madvise is None:
        return 0
    return hi - lo if madvise(lo, hi - lo, _MADV_DONTNEED) == 0 else 0


@functools.cache
def _madvise() -> Any:
    """libc's ``madvise`` through ctypes (looked up once), or None."""
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise
