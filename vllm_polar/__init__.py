"""vllm-polar: programs of layers for vLLM."""

def register() -> None:
    """vLLM general-plugin entry point (filled in by the runtime)."""
