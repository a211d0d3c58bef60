"""Serving load: stock vLLM vs PoLar with the predictor vs PoLar with a fixed identity program.

The same model, load and settings for the three servers, one after the other on 127.0.0.1:
``--requests`` questions of the levelled arithmetic task sent with ``--concurrency`` in
flight, ``--max-tokens`` greedy tokens each (EOS ignored).  Reports requests/s and p50/p95
latency per server (median of ``--runs`` runs) and the predictor's time per request (from the
server's own ``polar:predictor_latency_seconds`` histogram).  The predictor is a small
checkpoint fitted here on random valid programs: its cost, not its quality, is measured.

    python benchmarks/serving.py --model smollm2-135m --out benchmarks/results/serving.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import requests

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def fit_predictor(model: str, questions: list[str], out: Path) -> Path:
    """A predictor over random valid skip/repeat programs (cheap to train)."""
    from transformers import AutoConfig

    from polar.models import prepare
    from polar.predictor.fit import fit
    from polar.predictor.labels import SupervisionRow, write_supervision
    from polar.predictor.training import Hyperparameters

    depth = AutoConfig.from_pretrained(model).num_hidden_layers
    rng = random.Random(0)
    rows = []
    for question in questions:
        start = rng.randrange(0, depth - 4)
        block = tuple(range(start, start + rng.choice((1, 2))))
        skip = (*range(0, start), *range(start + len(block), depth))
        loop = (*range(0, start + len(block)), *block, *range(start + len(block), depth))
        rows.append(SupervisionRow(question, "0", [rng.choice((skip, loop))], base_correct=False))
    write_supervision(rows, out / "supervision.jsonl")
    fit(
        out / "supervision.jsonl",
        str(prepare("minilm")),
        depth,
        out / "ckpt",
        base_model=model,
        grid=[Hyperparameters(lr=3e-3, batch_size=16, epochs=3)],
        cache_dir=out / "embeddings",
    )
    return out / "ckpt"


def start_server(command: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = 18000 + random.randrange(1000)
    sink = log.open("w")
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=sink, stderr=sink
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited, see {log}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server did not start, see {log}")


async def load(url: str, questions: list[str], args, xargs: dict | None) -> tuple[float, list]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    gate = asyncio.Semaphore(args.concurrency)
    extra = {"ignore_eos": True, **({"vllm_xargs": xargs} if xargs else {})}

    async def one(question: str) -> float:
        async with gate:
            start = time.perf_counter()
            await client.completions.create(
                model="bench",
                prompt=question,
                max_tokens=args.max_tokens,
                temperature=0,
                extra_body=extra,
            )
            return time.perf_counter() - start

    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(q) for q in questions))
    elapsed = time.perf_counter() - start
    await client.close()
    return len(questions) / elapsed, sorted(latencies)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def predictor_seconds(url: str) -> tuple[float, float]:
    """(sum, count) of the server's predictor-latency histogram."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"polar:predictor_latency_seconds_{key}"):
                values[key] = float(line.split()[-1])
    return values.get("sum", 0.0), values.get("count", 0.0)


def measure(name: str, command: list[str], questions: list[str], args, xargs, work: Path) -> dict:
    process, url = start_server(command, work / f"{name.replace(' ', '_')}.log")
    try:
        asyncio.run(load(url, questions[: args.concurrency], args, xargs))  # warm-up
        before = predictor_seconds(url)
        runs = [asyncio.run(load(url, questions, args, xargs)) for _ in range(args.runs)]
        after = predictor_seconds(url)
    finally:
        process.terminate()
        process.wait(timeout=120)
    count = after[1] - before[1]
    result = {
        "requests_per_s": statistics.median(r for r, _ in runs),
        "p50_s": statistics.median(percentile(lat, 0.5) for _, lat in runs),
        "p95_s": statistics.median(percentile(lat, 0.95) for _, lat in runs),
        "predictor_s_per_request": (after[0] - before[0]) / count if count else None,
    }
    print(f"{name:22s} {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="HF id, path or prepared name")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving.json"))
    args = parser.parse_args()

    from polar.models import resolve
    from polar.prompts import direct_answer_text
    from polar.tasks import load_task

    model = resolve(args.model)
    examples = load_task("arith-1", split="test", limit=args.requests)
    questions = [direct_answer_text(e.question) for e in examples]
    work = Path(tempfile.mkdtemp(prefix="polar-serving-bench-"))
    predictor = fit_predictor(model, [e.question for e in examples], work)
    common = ["--served-model-name", "bench", "--dtype", "float32", "--max-model-len", "1024"]
    python = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    polar = [str(Path(sys.executable).parent / "vllm-polar"), "serve", model]
    results = {
        "stock": measure("stock", [*python, *common], questions, args, None, work),
        "polar predictor": measure(
            "polar predictor",
            [*polar, *common, "--polar-predictor", str(predictor)],
            questions,
            args,
            None,
            work,
        ),
        "polar identity": measure(
            "polar identity",
            [*polar, *common, "--additional-config", json.dumps({"polar": {}})],
            questions,
            args,
            {"polar_program": "identity"},
            work,
        ),
    }
    overhead = (
        results["polar predictor"]["predictor_s_per_request"] / results["polar predictor"]["p50_s"]
    )
    summary = {
        "predictor share of median latency (goal <= 0.05)": overhead,
        "polar predictor / stock requests/s": results["polar predictor"]["requests_per_s"]
        / results["stock"]["requests_per_s"],
        "polar identity / stock requests/s": results["polar identity"]["requests_per_s"]
        / results["stock"]["requests_per_s"],
    }
    for name, value in summary.items():
        print(f"{name:52s} {value:.3f}")
    from polar.search.records import code_version

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "commit": code_version(),
                "settings": {**vars(args), "out": str(args.out), "model": model},
                "results": results,
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
