"""Predictor latency on this machine: encoder, network head, beam search (k = 5).

The head (projection + cross-attention + layer encoder + boundary/op heads) and the beam are
timed on random token embeddings of ``--tokens`` tokens with untrained weights, for depths 30
and 36, batch 1 and 32, and encoder widths 384 (all-MiniLM-L6-v2) and 1024
(Qwen3-Embedding-0.6B, the paper's). The beam's cost grows with the number of segments, so it
is timed at both ends: the fewest segments (D / 4, every segment K_MAX long) and the most (D,
a boundary at every layer); head+beam uses the most. The encoder is timed separately on
real questions. Every figure is a median over ``--runs`` runs, per request (batch time / batch
size).

    .venv/bin/python benchmarks/predictor_latency.py [--encoder minilm] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from polar.predictor.decoding import decode_batch
from polar.predictor.encoder import encode_tokens, load_encoder
from polar.predictor.network import NetworkConfig, PredictorNetwork, count_parameters
from polar.search.records import code_version

QUESTION = (
    "Natalia sold clips to {n} of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"
)


def median_ms(function: Callable[[], object], runs: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def time_head_and_beam(encoder_dim: int, num_layers: int, batch: int, args) -> dict:
    """Median per-request milliseconds of the head and of the beam search (k = 5)."""
    torch.manual_seed(0)
    config = NetworkConfig(encoder_dim, num_layers)
    network = PredictorNetwork(config).eval()
    embeddings = torch.randn(batch, args.tokens, encoder_dim)
    mask = torch.ones(batch, args.tokens, dtype=torch.bool)
    runs = args.runs if batch == 1 else max(5, args.runs // 5)
    with torch.inference_mode():
        head_ms = median_ms(lambda: network(embeddings, mask), runs) / batch
    op_logits = torch.randn(batch, num_layers, 3)
    beam_ms = {}
    for name, boundary_logit in (("fewest", -5.0), ("most", 5.0)):
        boundary_logits = torch.full((batch, num_layers), boundary_logit)
        beam = median_ms(lambda b=boundary_logits: decode_batch(b, op_logits, k=5), runs)
        beam_ms[name] = beam / batch
    return {
        "encoder_dim": encoder_dim,
        "num_layers": num_layers,
        "params": count_parameters(config),
        "batch": batch,
        "head_ms": head_ms,
        "beam_ms_fewest_segments": beam_ms["fewest"],
        "beam_ms_most_segments": beam_ms["most"],
        "head_beam_ms": head_ms + beam_ms["most"],
    }


def time_encoder(encoder, batch: int, runs: int) -> dict:
    questions = [QUESTION.format(n=n + 40) for n in range(batch)]
    tokens = encode_tokens(encoder, questions[:1])[0].shape[0]
    total = median_ms(lambda: encode_tokens(encoder, questions), runs)
    return {"batch": batch, "tokens": tokens, "encoder_ms": total / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", help="sentence-transformers name/path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--tokens", type=int, default=64, help="question length in tokens")
    parser.add_argument("--runs", type=int, default=50, help="runs at batch 1 (batch 32: 1/5)")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/predictor_latency.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"{machine}, {args.tokens} tokens, k = 5\n")

    print(
        "| encoder dim | D | params | batch | head ms/req | beam ms/req, D/4 segments "
        "| beam ms/req, D segments | head+beam ms/req |"
    )
    print("|---|---|---|---|---|---|---|---|")
    head_rows = []
    for encoder_dim in (384, 1024):
        for num_layers in (30, 36):
            for batch in (1, 32):
                row = time_head_and_beam(encoder_dim, num_layers, batch, args)
                head_rows.append(row)
                print(
                    f"| {encoder_dim} | {num_layers} | {row['params'] / 1e6:.2f} M | {batch} "
                    f"| {row['head_ms']:.3f} | {row['beam_ms_fewest_segments']:.3f} "
                    f"| {row['beam_ms_most_segments']:.3f} | {row['head_beam_ms']:.3f} |"
                )

    encoder = load_encoder(args.encoder)
    print(f"\nencoder {args.encoder}:\n\n| batch | tokens | encoder ms/req |\n|---|---|---|")
    encoder_rows = []
    for batch in (1, 32):
        row = time_encoder(encoder, batch, args.runs if batch == 1 else max(5, args.runs // 5))
        encoder_rows.append(row)
        print(f"| {batch} | {row['tokens']} | {row['encoder_ms']:.3f} |")

    machine["load_average_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args) | {"out": str(args.out)}, "machine": machine}
    report["commit"] = code_version()
    report |= {"head_and_beam": head_rows, "encoder": encoder_rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
