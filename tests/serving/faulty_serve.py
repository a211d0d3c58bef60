"""``vllm-polar serve`` with faults injected into its predictor, for the soak test.

A batch holding a prompt with ``FAULT`` raises; a batch holding a prompt with ``SLOW`` holds the
predictor worker for ``SLOW_S`` seconds first (so other prompts queue behind it).
Run as ``python -m tests.serving.faulty_serve serve MODEL ...``.
"""

from __future__ import annotations

import time

from polar.predictor.predictor import Predictor
from vllm_polar.entrypoints.cli import main

FAULT = "FAULT"
SLOW = "SLOW"
SLOW_S = 1.0

_predict = Predictor.predict


def predict(self, prompts, *args, **kwargs):
    if any(FAULT in prompt for prompt in prompts):
        raise RuntimeError("injected predictor fault")
    if any(SLOW in prompt for prompt in prompts):
        time.sleep(SLOW_S)
    return _predict(self, prompts, *args, **kwargs)


Predictor.predict = predict

if __name__ == "__main__":
    main()
