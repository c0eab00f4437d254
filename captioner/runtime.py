"""Process-wide settings that make PyTorch fast on a small CPU; called once by entry points."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _glibc_function(name: str):
    """A function of the C library, or None where this is not Linux or it has no such function."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def tune_malloc(
    mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30, arena_max: int = 2
) -> bool:
    """Stop glibc from mmapping, zeroing and unmapping every large tensor afresh.

    With glibc's defaults each activation above 32 MiB-ish is a fresh mmap, which roughly halves
    CPU inference speed for this model and makes timings noisy. Keeping freed memory (the trim
    threshold) is only safe with few arenas: glibc gives each thread that allocates its own,
    and a web server's worker threads would each keep their peak (+16% resident memory under
    load, measured by bench/load.py). Returns False where this is not glibc.
    """
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(_M_ARENA_MAX, arena_max) == 1
    return bool(ok)


def release_free_memory() -> bool:
    """Give the heap's free memory back to the system (glibc's malloc_trim), e.g. after one
    large picture was decoded: with `tune_malloc`'s trim threshold it would otherwise stay with
    the process. A few milliseconds; returns False where this is not glibc."""
    malloc_trim = _glibc_function("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


def weights_key(module: torch.nn.Module) -> tuple:
    """Changes whenever a parameter of `module` is replaced or updated in place (its storage or
    its version counter): when an inference copy made from the weights must be made again."""
    return tuple((p.data_ptr(), p._version) for p in module.parameters())
