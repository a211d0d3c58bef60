"""The PoLar demo: serve a model with the shipped predictor, query it with the plain ``openai``
client, then evaluate the predictor on a small test slice.

    python scripts/demo.py            # what ``make demo`` runs (Qwen2.5-Coder-0.5B, ~10 min)

1. prepares the model and the predictor's encoder (downloaded and converted once, cached);
2. starts ``vllm-polar serve MODEL --polar-predictor CKPT`` on 127.0.0.1;
3. asks a few arithmetic questions through ``openai.OpenAI`` with no PoLar argument (the server's
   predictor picks each program), then one ``n = 3`` request (pass@3 under the top-3 programs);
   beside each answer it prints the program the checkpoint predicts for that prompt;
4. stops the server and runs ``polar eval`` on ``--per-level`` test questions per level, reusing
   the temperature and fixed programs chosen on validation in the committed evaluation, and
   prints its table (arguments the demo does not know go to ``polar eval``).

The server is stopped at the end, on an error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "qwen2.5-coder-0.5b-arith"
SELECTION = ROOT / "results" / "eval" / "qwen2.5-coder-0.5b-arith" / "selection.json"
QUESTIONS = (
    "Maya has 47 marbles. Maya finds 8 more marbles. How many marbles does Maya have now?",
    "Ben has 81 stamps. Ben gives 36 stamps to Ines. How many stamps does Ben have now?",
    "Kira has 64 cookies. Then the number of cookies Kira has is multiplied by 7. How many "
    "cookies does Kira have now?",
)


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


@contextmanager
def server(model: str, ckpt: Path, log: Path, port: int, timeout: float):
    """``vllm-polar serve`` in its own process group; yields its base URL, stops it after."""
    import requests

    command = [
        str(Path(sys.executable).with_name("vllm-polar")),
        "serve",
        model,
        "--polar-predictor",
        str(ckpt),
        "--served-model-name",
        "polar",
        "--dtype",
        "float32",
        "--max-model-len",
        "1024",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"} | dict(os.environ)
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"the server did not start in {timeout:.0f} s (log: {log})")
            print(
                f"\r   starting the server … {time.monotonic() - start:.0f} s", end="", flush=True
            )
            time.sleep(2)
        print(f"\r   server ready at {url} after {time.monotonic() - start:.0f} s", flush=True)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not exited in 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    print("   server stopped", flush=True)


def ask(url: str, ckpt: Path, model_path: Path) -> None:
    """The questions through the stock OpenAI client, each beside its predicted programs."""
    import openai
    from transformers import AutoTokenizer

    from polar.answers import extract_answer
    from polar.predictor.checkpoint import load
    from polar.prompts import direct_answer_text, predictor_input
    from vllm_polar.program import format_program
    from vllm_polar.runtime.requests import fill

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    predictor = load(ckpt)
    depth = predictor.config.network.num_layers

    def predicted(question: str, k: int) -> list[str]:
        """The programs the server runs for the question's k completions."""
        candidates = predictor.predict([predictor_input(question, tokenizer)], k)[0]
        return [format_program(p) for p in fill([c.program for c in candidates], k, depth)]

    for question in QUESTIONS:
        reply = client.chat.completions.create(
            model="polar",
            messages=[{"role": "user", "content": direct_answer_text(question)}],
            max_tokens=50,
            temperature=0,
        )
        answer = extract_answer(reply.choices[0].message.content)
        print(f"   Q: {question}\n   A: {answer!s:>8}   program {predicted(question, 1)[0]}")
    question = QUESTIONS[-1]
    reply = client.chat.completions.create(
        model="polar",
        messages=[{"role": "user", "content": direct_answer_text(question)}],
        max_tokens=50,
        temperature=0,
        n=3,
    )
    print(f"   pass@3, one request with n = 3: {question}")
    programs = predicted(question, 3)
    for choice in reply.choices:
        answer = extract_answer(choice.message.content)
        print(f"   #{choice.index + 1}: {answer!s:>8}   {programs[choice.index]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="prepared name or folder")
    parser.add_argument("--ckpt", type=Path, default=CHECKPOINT, help="predictor checkpoint")
    parser.add_argument("--selection", type=Path, default=SELECTION, help="validation choices")
    parser.add_argument("--per-level", type=int, default=8, help="test questions per level")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--timeout", type=float, default=600, help="server start, seconds")
    args, eval_args = parser.parse_known_args(argv)  # the rest goes to polar eval
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from polar.models import prepare, resolve

    step(f"preparing {args.model} and the predictor's encoder (once; cached afterwards)")
    model_path = Path(resolve(args.model))
    prepare("minilm")
    out = args.out or Path(tempfile.mkdtemp(prefix="polar-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    step(f"serving {args.model} with the predictor {args.ckpt}")
    with server(str(model_path), args.ckpt, out / "server.log", args.port, args.timeout) as url:
        step("questions through the plain openai client (the server's predictor picks)")
        ask(url, args.ckpt, model_path)

    step(f"polar eval on {args.per_level} test questions per level (k = {args.k})")
    if args.selection.is_file():
        (out / "eval").mkdir(exist_ok=True)
        shutil.copy(args.selection, out / "eval" / "selection.json")
    command = [
        str(Path(sys.executable).with_name("polar")),
        "eval",
        "--model",
        str(model_path),
        "--ckpt",
        str(args.ckpt),
        "--per-level",
        str(args.per_level),
        "--k",
        str(args.k),
        "--ood",
        "--out",
        str(out / "eval"),
        *eval_args,
    ]
    result = subprocess.run(command, env={"VLLM_CPU_KVCACHE_SPACE": "3"} | dict(os.environ))
    print(f"\nFiles: {out}")
    return result.returncode


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; the server was stopped", file=sys.stderr)
        sys.exit(130)
