"""``polar eval`` end to end on SmolLM2-135M with a tiny predictor: every method runs the
programs it should, on one engine, and the results files hold every completion."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections import defaultdict

from polar.evaluation import EvalSettings, evaluate
from polar.evaluation.programs import SegmentFormSampler, shortgpt_program
from polar.evaluation.run import changed_training_data
from polar.predictor.checkpoint import load
from polar.prompts import predictor_input
from polar.search.run import select_examples
from tests.data.conftest import SHARED_DATA
from vllm_polar.program import format_program, identity, parse_program
from vllm_polar.runtime.requests import fill

from .conftest import DEPTH


def programs_by_question(attempts: list[dict], method: str) -> dict[str, list[str]]:
    tries: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for a in attempts:
        if a["method"] == method and a["task"] == "arith":
            tries[a["id"]].append((a["attempt"], a["program"]))
    return {q: [p for _, p in sorted(t)] for q, t in tries.items()}


def test_every_method_runs_its_programs(tiny_predictor, tmp_path):
    ckpt, supervision = tiny_predictor
    settings = EvalSettings(
        model="smollm2-135m",
        ckpt=str(ckpt),
        per_level=1,
        k=2,
        temperatures=(0.7, 1.0),
        val_per_level=1,
        fixed_candidates=2,
        supervision=(str(supervision),),
        shortgpt_prompts=4,
        ood=("mawps-singleop",),
        ood_limit=3,
        data_dir=str(SHARED_DATA.resolve()),
    )
    results = evaluate(settings, tmp_path)
    for name in ("results.json", "completions.jsonl", "results.md", "selection.json"):
        assert (tmp_path / name).is_file()
    assert {p.name for p in tmp_path.glob("*.png")} == {"pass_at_k.png", "accuracy_vs_steps.png"}
    attempts = [json.loads(line) for line in (tmp_path / "completions.jsonl").open()]
    examples = select_examples("arith", "test", per_level=1)
    ids = [e.id for e in examples]
    base = format_program(identity(DEPTH))

    assert programs_by_question(attempts, "base") == {q: [base] for q in ids}
    assert programs_by_question(attempts, "sampling") == {q: [base, base] for q in ids}

    predictor = load(ckpt)
    tokenizer = _tokenizer()
    predicted = predictor.predict([predictor_input(e.question, tokenizer) for e in examples], 2)
    expected = {
        e.id: [format_program(p) for p in fill([c.program for c in cands], 2, DEPTH)]
        for e, cands in zip(examples, predicted)
    }
    polar = programs_by_question(attempts, "polar")
    assert polar == expected
    assert programs_by_question(attempts, "polar_top1") == {q: p[:1] for q, p in polar.items()}

    fixed = results["selection"]["fixed"]["programs"]
    assert len(fixed) == 2
    assert programs_by_question(attempts, "fixed") == {q: fixed for q in ids}

    sampler = SegmentFormSampler(DEPTH)
    for e in examples:
        steps = [len(parse_program(p)) for p in polar[e.id]]
        drawn = sampler.distinct(steps, random.Random(f"0/random/{e.id}"))
        assert programs_by_question(attempts, "random")[e.id] == list(map(format_program, drawn))

    mean_steps = statistics.mean(len(parse_program(p[0])) for p in polar.values())
    short = shortgpt_program(results["selection"]["shortgpt"]["influence"], round(mean_steps))
    assert programs_by_question(attempts, "shortgpt") == {q: [format_program(short)] for q in ids}

    ood = [a for a in attempts if a["task"] == "mawps-singleop"]
    assert {a["method"] for a in ood} == {"base", "polar_top1"} and len(ood) == 6
    assert all({"strict", "lenient", "answer", "completion"} <= a.keys() for a in attempts)
    assert set(results["metrics"]) == {"arith", "mawps-singleop"}
    assert results["metrics"]["arith"]["base"]["levels"]["all"]["n"] == 5


def _tokenizer():
    from transformers import AutoTokenizer

    from polar.models import prepare

    return AutoTokenizer.from_pretrained(prepare("smollm2-135m"))


def test_training_files_changed_since_the_checkpoint_are_named(tmp_path):
    kept, grown = tmp_path / "kept.jsonl", tmp_path / "grown.jsonl"
    kept.write_text('{"question": "a"}\n')
    grown.write_text('{"question": "b"}\n')
    training = {"data_sha256": [hashlib.sha256(p.read_bytes()).hexdigest() for p in (kept, grown)]}
    assert changed_training_data(training, [str(kept), str(grown)]) == []
    with grown.open("a") as file:
        file.write('{"question": "c"}\n')
    assert changed_training_data(training, [str(kept), str(grown)]) == [str(grown)]
    assert changed_training_data({}, [str(kept)]) == []  # checkpoints that recorded no digests
