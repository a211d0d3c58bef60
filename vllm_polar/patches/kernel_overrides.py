"""Patch ``vllm.triton_utils.dispatcher._rebind_kernels`` so that a process that has loaded
numba can still start a CPU worker.

At a CPU worker's start, vLLM swaps some Triton kernels for CPU implementations and, to rebind
every holder, reads ``vars(value).get("kernel")`` for every attribute of every loaded module.
llvmlite's ``ffi.lib`` (loaded with numba, which compiles the plan's passes) answers any
attribute lookup, ``__dict__`` included, with a wrapped C function, so that read raises and
the worker fails: an in-process engine started after a plan was built, for one.  The patch
takes that one attribute (it holds no kernel) out of its module while the scan runs.
"""

from __future__ import annotations

import functools
import sys

from vllm.triton_utils import dispatcher


def apply() -> None:
    original = dispatcher._rebind_kernels
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def rebind_kernels(overrides):
        ffi = sys.modules.get("llvmlite.binding.ffi")
        lib = vars(ffi).pop("lib", None) if ffi is not None else None
        try:
            original(overrides)
        finally:
            if lib is not None:
                ffi.lib = lib

    rebind_kernels.polar_patched = True
    dispatcher._rebind_kernels = rebind_kernels
