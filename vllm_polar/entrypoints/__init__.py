"""User-facing entry points: the offline ``LLM`` and the ``vllm-polar`` command."""
