"""Process memory: the high-water marks logged each step, and keeping glibc's heap from growing.

A CPU step allocates and frees gigabytes in phases of different shapes (generation's per-token
tensors, then the micro-batches' activations). glibc keeps freed blocks for reuse, and its
*dynamic* mmap threshold rises to the largest block freed (up to 32 MiB), so after the first
step even 25 MB tensors come from the heap instead of their own mappings; the heap then
fragments and the default run's high-water mark kept climbing, step after step (2.5 -> 3.2 GB
over three steps; docs/default-run.md, Memory). Two fixes, both no-ops on other C libraries:
``fix_mmap_threshold`` pins the threshold (blocks of 1 MiB and more are mapped and unmapped on
their own), and ``trim_heap`` between phases returns what the heap holds free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


MMAP_THRESHOLD = 1 << 20  # bytes; the default run over 20 steps peaked at 2.75 GB with 1 MiB, 3.02 GB with 8 MiB
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold (unless the user set ``MALLOC_MMAP_THRESHOLD_``); True when set."""
    import os

    libc = _libc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim_heap() -> None:
    """Return the C heap's free memory to the OS (glibc ``malloc_trim(0)``); nothing elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def memory_peaks() -> dict[str, float]:
    """memory/*: high-water marks since the process started: resident memory, and on CUDA the allocator's peak."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"memory/peak_rss_gb": rss / 1e9 if sys.platform == "darwin" else rss * 1024 / 1e9}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["memory/gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out
