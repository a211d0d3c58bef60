"""Suite-wide settings: offline, float32-friendly, small KV cache for every engine."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vllm_polar import register  # noqa: E402

# vLLM loads general plugins once per process; a test that builds a stock engine with
# VLLM_PLUGINS="" must not leave this process without PoLar for the tests after it.
register()
