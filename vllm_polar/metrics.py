"""Prometheus metrics of PoLar, exported on the server's ``/metrics`` with vLLM's own.

Named ``polar:*``: vLLM unregisters every ``vllm:*`` collector when its stat logger starts.
"""

from prometheus_client import Counter, Gauge, Histogram

FALLBACK_REASONS = ("error", "timeout", "blank prompt")

PROGRAM_STEPS = Histogram(
    "polar:program_steps",
    "Executed steps (layer calls) of each request's program.",
    buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128),
)
PROGRAM_UNIQUE_LAYERS = Histogram(
    "polar:program_unique_layers",
    "Distinct layers each request's program runs.",
    buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128),
)
PREDICTOR_LATENCY = Histogram(
    "polar:predictor_latency_seconds",
    "Predictor time per request (encoder, network and beam search; batch time / batch size).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)
PREDICTOR_FALLBACKS = Counter(
    "polar:predictor_fallbacks",
    "Requests that ran the identity program instead of a prediction, by reason.",
    ["reason"],
)
for _reason in FALLBACK_REASONS:
    PREDICTOR_FALLBACKS.labels(reason=_reason)  # exported from the start, at zero
KV_PAGES = Gauge(
    "polar:kv_pages_held",
    "KV pages held by the requests whose programs run `steps` steps (a page holds one block "
    "of tokens of one step; a page shared through the prefix cache counts for each holder).",
    ["engine", "steps"],
)
_kv_steps_seen: dict[int, set[int]] = {}


def record_kv_pages(pages: dict[int, int], engine: int) -> None:
    """Set the engine's pages per step count; a step count no request holds any more reads 0."""
    seen = _kv_steps_seen.setdefault(engine, set())
    for steps in seen - pages.keys():
        KV_PAGES.labels(engine=str(engine), steps=str(steps)).set(0)
    for steps, count in pages.items():
        KV_PAGES.labels(engine=str(engine), steps=str(steps)).set(count)
    seen.update(pages)
