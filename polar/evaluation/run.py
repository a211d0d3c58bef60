"""``polar eval``: a trained predictor's programs against the base model and the controls.

One PoLar engine (``vllm_polar.LLM`` with the predictor, float32) runs every method on the same
questions, each request with the paper's direct prompt, at most 50 new tokens, stopped after its
first closed box (:mod:`polar.stopping`):

``base``          greedy, the identity program (pass@1).
``sampling``      k samples of the identity at the temperature chosen on the validation split.
``polar``         the predictor's top-k programs (beam), greedy within each, as a user gets
                  them: ``generate(..., polar=True)`` with ``n = k``.
``polar_top1``    the same with ``n = 1`` (its latency is the one a served request pays).
``fixed``         the k programs most accurate on the validation split among the programs
                  valid for the most training questions, the same for every question.
``random``        k random programs of the predictor's space, one per predicted program, with
                  its step count (seeded).
``shortgpt``      the layers of lowest Block Influence on training prompts removed, down to
                  the predictor's mean step count, as one fixed program.

Choices made on validation (temperature, fixed programs) are stored in ``selection.json`` and
reused when the run is repeated. Out of distribution: ``base`` and ``polar_top1`` on each task
of ``ood``. Every completion, graded strictly and leniently, goes to ``completions.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polar.answers import grade
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt, predictor_input
from polar.tasks import Example
from vllm_polar.program import Program, format_program, identity, num_unique_layers

METHODS = ("base", "sampling", "polar", "polar_top1", "fixed", "random", "shortgpt")
RANKED = {"polar", "fixed"}
"""Methods whose k tries are ranked (pass@j reads the first j); the others' are exchangeable."""
TEMPERATURES = (0.3, 0.7, 1.0)
OOD_TASKS = (
    "asdiv",
    "mawps-singleop",
    "mawps-addsub",
    "mawps-singleeq",
    "mawps-multiarith",
    "gsm8k",
)


@dataclass(frozen=True)
class EvalSettings:
    """Everything that determines an evaluation (stored with its results)."""

    model: str
    ckpt: str
    task: str = "arith"
    split: str = "test"
    per_level: int | None = None
    limit: int | None = None
    k: int = 5
    temperatures: tuple[float, ...] = TEMPERATURES
    val_split: str = "val"
    val_per_level: int = 20
    fixed_candidates: int = 16
    supervision: tuple[str, ...] = ()
    shortgpt_prompts: int = 64
    ood: tuple[str, ...] = OOD_TASKS
    ood_limit: int | None = 200
    data_dir: str | None = None
    seed: int = 0


@dataclass
class Attempt:
    """One completion of one method for one question."""

    method: str
    id: str
    attempt: int
    program: str
    steps: int
    unique_layers: int
    completion: str
    answer: str | None
    strict: bool
    lenient: bool
    level: int | str | None = None
    task: str = ""

    @staticmethod
    def of(method: str, example: Example, attempt: int, program: Program, text: str, task: str):
        return Attempt(
            method=method,
            id=example.id,
            attempt=attempt,
            program=format_program(program),
            steps=len(program),
            unique_layers=num_unique_layers(program),
            completion=text,
            level=example.metadata.get("level"),
            task=task,
            **grade(text, example.answer),
        )


@dataclass
class MethodRun:
    """A method's attempts on a set of questions and the wall-clock time of its generation."""

    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0


class Runner:
    """The engine and the prompts; runs one method's requests as one ``generate`` call."""

    def __init__(self, llm, seed: int) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.depth = llm.polar_config.num_layers
        self.seed = seed

    def prompt(self, example: Example) -> str:
        return direct_answer_prompt(example.question, self.tokenizer)

    def params(self, n: int = 1, temperature: float = 0.0):
        from vllm import SamplingParams

        from polar.stopping import STOP_AFTER_BOXED

        return SamplingParams(
            n=n,
            temperature=temperature,
            max_tokens=MAX_NEW_TOKENS,
            extra_args={STOP_AFTER_BOXED: True},
        )

    def timed(self, call) -> MethodRun:
        """Run ``call`` on an empty prefix cache and time it."""
        self.llm.reset_prefix_cache()
        start = time.perf_counter()
        attempts = call()
        return MethodRun(attempts, time.perf_counter() - start)

    def greedy(self, method: str, examples: Sequence[Example], task: str) -> MethodRun:
        """The identity, greedy, one try."""
        return self.programs(method, [(e, [identity(self.depth)]) for e in examples], task)

    def sampled(
        self, method: str, examples: Sequence[Example], k: int, temperature: float, task: str
    ) -> MethodRun:
        def call():
            outputs = self.llm.generate(
                [self.prompt(e) for e in examples],
                self.params(k, temperature),
                polar=False,
                use_tqdm=False,
            )
            base = identity(self.depth)
            return [
                Attempt.of(method, e, i, base, c.text, task)
                for e, output in zip(examples, outputs)
                for i, c in enumerate(output.outputs)
            ]

        return self.timed(call)

    def predicted(self, method: str, examples: Sequence[Example], k: int, task: str) -> MethodRun:
        """The predictor's top-k programs through ``generate(..., polar=True)``."""

        def call():
            outputs = self.llm.generate(
                [self.prompt(e) for e in examples], self.params(k), polar=True, use_tqdm=False
            )
            return [
                Attempt.of(method, e, c.index, c.polar.program, c.text, task)
                for e, output in zip(examples, outputs)
                for c in output.outputs
            ]

        return self.timed(call)

    def programs(
        self, method: str, tries: Sequence[tuple[Example, Sequence[Program]]], task: str
    ) -> MethodRun:
        """Each question's given programs, greedy, one request per (question, program)."""

        def call():
            flat = [(e, i, p) for e, programs in tries for i, p in enumerate(programs)]
            outputs = self.llm.generate(
                [self.prompt(e) for e, _, _ in flat],
                self.params(),
                programs=[list(p) for _, _, p in flat],
                use_tqdm=False,
            )
            return [
                Attempt.of(method, e, i, p, output.outputs[0].text, task)
                for (e, i, p), output in zip(flat, outputs)
            ]

        return self.timed(call)


def choose_temperature(runner: Runner, examples, settings: EvalSettings) -> dict[str, Any]:
    """Base sampling's temperature: the best strict pass@k on the validation questions."""
    scores = {}
    for temperature in settings.temperatures:
        run = runner.sampled("sampling", examples, settings.k, temperature, settings.task)
        solved = {a.id for a in run.attempts if a.strict}
        scores[str(temperature)] = len(solved) / len(examples)
    best = max(settings.temperatures, key=lambda t: scores[str(t)])
    return {"temperature": best, "val_pass_at_k": scores}


def fixed_candidates(supervision: Sequence[str], count: int, depth: int) -> list[Program]:
    """The identity and the ``count`` programs valid for the most training questions."""
    from polar.search.records import read_rows

    valid_for: Counter = Counter()
    for path in supervision:
        questions: dict[str, set[Program]] = {}
        for row in read_rows(Path(path)):
            key = row.get("id", row["question"])
            questions.setdefault(key, set()).update(map(tuple, row["valid_programs"]))
        for programs in questions.values():
            valid_for.update(programs)
    ranked = [p for p, _ in sorted(valid_for.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))]
    base = identity(depth)
    return [base, *[p for p in ranked if p != base][:count]]


def choose_fixed(runner: Runner, examples, settings: EvalSettings) -> dict[str, Any]:
    """The k fixed programs: the most accurate candidates on the validation questions (ties:
    fewer steps, then the candidate order)."""
    candidates = fixed_candidates(settings.supervision, settings.fixed_candidates, runner.depth)
    run = runner.programs("fixed", [(e, candidates) for e in examples], settings.task)
    accuracy = Counter()
    for attempt in run.attempts:
        accuracy[attempt.program] += attempt.strict
    order = sorted(
        range(len(candidates)),
        key=lambda i: (-accuracy[format_program(candidates[i])], len(candidates[i]), i),
    )
    return {
        "programs": [format_program(candidates[i]) for i in order[: settings.k]],
        "val_accuracy": {
            format_program(p): accuracy[format_program(p)] / len(examples) for p in candidates
        },
    }


def training_prompts(supervision: Sequence[str], count: int, runner: Runner) -> list[str]:
    """The prompts of the first ``count`` training questions (ShortGPT's calibration set)."""
    from polar.search.records import read_rows

    questions: dict[str, None] = {}
    for path in supervision:
        questions.update(dict.fromkeys(row["question"] for row in read_rows(Path(path))))
    return [direct_answer_prompt(q, runner.tokenizer) for q in list(questions)[:count]]


def random_tries(runner: Runner, polar: MethodRun, examples, seed: int) -> list:
    """Per question, one random segment form per predicted program, with its step count."""
    from polar.evaluation.programs import SegmentFormSampler

    sampler = SegmentFormSampler(runner.depth)
    steps: dict[str, list[int]] = {}
    for attempt in polar.attempts:
        steps.setdefault(attempt.id, []).append(attempt.steps)
    return [
        (e, sampler.distinct(steps[e.id], random.Random(f"{seed}/random/{e.id}"))) for e in examples
    ]


def start_engine(settings: EvalSettings, slots: int):
    from polar.models import resolve
    from polar.search.engine import ENGINE_OPTIONS
    from polar.stopping import BoxedAnswerStop
    from vllm_polar import LLM

    return LLM(
        model=str(resolve(settings.model)),
        polar_predictor=settings.ckpt,
        max_steps=slots,
        dtype="float32",
        max_model_len=2048,
        logits_processors=[BoxedAnswerStop],
        **(ENGINE_OPTIONS | {"seed": settings.seed}),
    )


def predictor_latency(ckpt: str, texts: Sequence[str], runs: int = 3) -> dict[str, float]:
    """Median milliseconds per request of the predictor's encoder, head and beam (batch 1)."""
    import torch

    from polar.predictor.checkpoint import load
    from polar.predictor.decoding import decode_batch
    from polar.predictor.encoder import encode_tokens, pad_tokens

    predictor = load(ckpt)
    parts: dict[str, list[float]] = {"encoder_ms": [], "head_ms": [], "beam_ms": []}
    with torch.inference_mode():
        for _ in range(runs):
            for text in texts:
                start = time.perf_counter()
                tokens, mask = pad_tokens(encode_tokens(predictor.encoder, [text]))
                encoded = time.perf_counter()
                boundary, ops = predictor.network(tokens, mask)
                headed = time.perf_counter()
                decode_batch(boundary, ops, 5, max_steps=predictor.max_steps)
                done = time.perf_counter()
                parts["encoder_ms"].append(1000 * (encoded - start))
                parts["head_ms"].append(1000 * (headed - encoded))
                parts["beam_ms"].append(1000 * (done - headed))
    latency = {name: statistics.median(values) for name, values in parts.items()}
    latency["total_ms"] = sum(latency.values())
    return latency


def evaluate(settings: EvalSettings, out: Path) -> dict[str, Any]:
    """Run every method (and the out-of-distribution tasks); write the results into ``out``."""
    from polar.evaluation.programs import block_influence, shortgpt_program
    from polar.evaluation.report import metrics, write_report
    from polar.models import resolve
    from polar.predictor.checkpoint import read_config
    from polar.search.records import code_version
    from polar.search.run import select_examples
    from polar.tasks import load_task

    commit = code_version()  # before this run writes its outputs, which may be tracked files
    checkpoint = read_config(Path(settings.ckpt))
    changed: list[str] = []  # the checkpoint's own training files, changed since it was trained
    if not settings.supervision:
        data = [
            os.path.normpath(Path(settings.ckpt) / d) for d in checkpoint.training.get("data", [])
        ]
        settings = EvalSettings(**{**asdict(settings), "supervision": tuple(data)})
        changed = changed_training_data(checkpoint.training, data)
        for path in changed:
            progress(
                f"warning: {path} is not the file the checkpoint was trained on (its sha256 "
                "differs); Fixed best and ShortGPT take their programs and prompts from it as it "
                "is now"
            )
    examples = select_examples(settings.task, settings.split, settings.limit, settings.per_level)
    validation = select_examples(
        settings.task, settings.val_split, per_level=settings.val_per_level
    )
    depth = checkpoint.network.num_layers
    out.mkdir(parents=True, exist_ok=True)
    selection_file = out / "selection.json"
    llm = start_engine(settings, max(depth, checkpoint.max_steps))
    runs: dict[str, dict[str, MethodRun]] = {}
    try:
        runner = Runner(llm, settings.seed)
        if selection_file.is_file():
            selection = json.loads(selection_file.read_text())
        else:
            progress("choosing the temperature and the fixed programs on validation")
            selection = {
                "sampling": choose_temperature(runner, validation, settings),
                "fixed": choose_fixed(runner, validation, settings),
                "validation_questions": len(validation),
            }
            selection_file.write_text(json.dumps(selection, indent=1) + "\n")
        task = settings.task
        main: dict[str, MethodRun] = {}
        progress("base, sampling, PoLar")
        main["base"] = runner.greedy("base", examples, task)
        temperature = selection["sampling"]["temperature"]
        main["sampling"] = runner.sampled("sampling", examples, settings.k, temperature, task)
        main["polar"] = runner.predicted("polar", examples, settings.k, task)
        main["polar_top1"] = runner.predicted("polar_top1", examples, 1, task)
        progress("fixed, random, ShortGPT")
        fixed = [parse(p) for p in selection["fixed"]["programs"]]
        main["fixed"] = runner.programs("fixed", [(e, fixed) for e in examples], task)
        main["random"] = runner.programs(
            "random", random_tries(runner, main["polar"], examples, settings.seed), task
        )
        influence = block_influence(
            resolve(settings.model),
            training_prompts(settings.supervision, settings.shortgpt_prompts, runner),
        )
        mean_steps = statistics.mean(a.steps for a in main["polar_top1"].attempts)
        short = shortgpt_program(influence, round(mean_steps))
        main["shortgpt"] = runner.programs("shortgpt", [(e, [short]) for e in examples], task)
        runs[task] = main
        for name in settings.ood:
            progress(f"out of distribution: {name}")
            ood = load_task(name, "test", limit=settings.ood_limit, data_dir=settings.data_dir)
            runs[name] = {
                "base": runner.greedy("base", ood, name),
                "polar_top1": runner.predicted("polar_top1", ood, 1, name),
            }
        latency = predictor_latency(
            settings.ckpt, [predictor_input(e.question, runner.tokenizer) for e in examples[:50]]
        )
    finally:
        llm.llm_engine.engine_core.shutdown()
    selection["shortgpt"] = {"influence": influence, "program": format_program(short)}
    with open(out / "completions.jsonl", "w") as file:
        for task_runs in runs.values():
            for run in task_runs.values():
                for attempt in run.attempts:
                    file.write(json.dumps(asdict(attempt)) + "\n")
    results = {
        "settings": asdict(settings),
        "commit": commit,
        "training_data_changed": changed,
        "selection": selection,
        "predictor_latency": latency,
        "metrics": {
            name: metrics(task_runs, settings.k, RANKED) for name, task_runs in runs.items()
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, out)
    return results


def changed_training_data(training: dict[str, Any], paths: Sequence[str]) -> list[str]:
    """Those of a checkpoint's training files (``paths``, resolved, in the checkpoint's order)
    whose sha256 is not the one recorded when the checkpoint was trained."""
    recorded = training.get("data_sha256", [])
    return [
        path
        for path, digest in zip(paths, recorded, strict=False)
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() != digest
    ]


def parse(text: str) -> Program:
    from vllm_polar.program import parse_program

    return parse_program(text)


def progress(message: str) -> None:
    print(f"polar eval: {message}", file=sys.stderr, flush=True)
