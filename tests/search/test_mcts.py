"""MCTS on a synthetic reward: finds planted programs, deterministic, batched, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polar.search.batch import Job, run_jobs
from polar.search.mcts import MCTSConfig, QuestionSearch
from polar.search.records import evaluated_programs
from polar.search.run import SearchSettings, output_paths, question_search, search_questions
from polar.search.space import SearchSpace
from tests.search.synthetic import DEPTH, PlantedReward, examples, planted
from vllm_polar.program import format_program, identity

ROOT = identity(DEPTH)
SPACE = SearchSpace(min_steps=DEPTH // 2, max_steps=15)


def search_one(seed: str, simulations: int = 100, space: SearchSpace = SPACE) -> QuestionSearch:
    search = QuestionSearch(space, MCTSConfig(simulations=simulations), ROOT, seed)
    reward = PlantedReward()
    while not search.done:
        programs = search.select_wave()
        search.complete_wave([float(reward.valid("synthetic/1", p)) for p in programs])
    return search


def test_finds_planted_program_within_budget():
    """A planted skip+loop program (one in a few hundred of the tree's children) is found
    within 100 simulations for at least 80 % of seeds."""
    searches = [search_one(f"seed-{seed}") for seed in range(20)]
    assert all(s.simulations == 100 for s in searches)
    assert all(planted(p) for s in searches for p in s.valid_programs())
    assert all(SPACE.admits(p) for s in searches for p in s.rewards)
    assert sum(bool(s.valid_programs()) for s in searches) >= 16


def test_search_exploits_the_valid_region():
    """Once a valid program is found, the tree keeps expanding around it."""
    search = search_one("exploit", simulations=200)
    assert len(search.valid_programs()) >= 0.25 * len(search.rewards)


def test_restricted_space_cannot_reach_a_skip_and_loop_program():
    assert not search_one(
        "skip-only", space=SearchSpace(kind="skip", max_steps=15, min_steps=6)
    ).valid_programs()
    assert not search_one(
        "loop-only", space=SearchSpace(kind="loop", max_steps=15, min_steps=6)
    ).valid_programs()


def test_first_wave_is_the_root_and_waves_use_virtual_loss():
    search = QuestionSearch(SPACE, MCTSConfig(simulations=20, wave=8), ROOT, "wave")
    assert search.select_wave() == [ROOT]
    search.complete_wave([0.0])
    wave = search.select_wave()
    assert len(wave) == 8 and len(set(wave)) == 8  # pending visits spread the wave out
    with pytest.raises(RuntimeError):
        search.select_wave()


def test_seeded_determinism():
    first, again, other = search_one("a"), search_one("a"), search_one("b")
    assert list(first.rewards) == list(again.rewards)
    assert list(first.rewards) != list(other.rewards)


def settings(**kw) -> SearchSettings:
    return SearchSettings(depth=DEPTH, min_steps=6, max_steps=15, mcts=MCTSConfig(40), **kw)


SPACES = ("skip_loop", "skip", "loop")


def read(out) -> dict:
    rows = {}
    for path in output_paths(out, SPACES).values():
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[(row["id"], row["space"])] = row
    return rows


def test_batches_many_questions_and_never_evaluates_a_pair_twice(tmp_path):
    reward = PlantedReward()
    search_questions(
        examples(6), reward, settings(), tmp_path / "s.jsonl", SPACES, show_progress=False
    )
    pairs = [pair for call in reward.calls for pair in call]
    assert len(pairs) == len(set(pairs))
    assert max(len({q for q, _ in call}) for call in reward.calls) == 6
    assert sum(p == ROOT for _, p in pairs) == 6  # identity once per question, for all spaces
    rows = read(tmp_path / "s.jsonl")
    assert len(rows) == 18
    assert all(r["base_correct"] == (int(r["id"].split("/")[1]) % 2 == 0) for r in rows.values())
    assert all(r["simulations"] == 40 for r in rows.values())


def test_same_seed_same_output_other_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        search_questions(
            examples(4),
            PlantedReward(),
            settings(seed=seed),
            tmp_path / f"{name}.jsonl",
            SPACES,
            show_progress=False,
        )
    a, b, c = (read(tmp_path / f"{n}.jsonl") for n in "abc")
    assert a == b
    assert {k: r["invalid_programs"] for k, r in a.items()} != {
        k: r["invalid_programs"] for k, r in c.items()
    }


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    full, uninterrupted = tmp_path / "full.jsonl", PlantedReward()
    search_questions(
        examples(8), uninterrupted, settings(), full, SPACES, max_active=3, show_progress=False
    )
    broken = tmp_path / "broken.jsonl"
    with pytest.raises(KeyboardInterrupt):
        search_questions(
            examples(8),
            PlantedReward(fail_after_calls=12),
            settings(),
            broken,
            SPACES,
            max_active=3,
            show_progress=False,
        )
    assert 0 < len(read(broken)) < 24
    with open(broken, "a") as file:
        file.write('{"question": "half a ro')  # killed mid-write
    resumed = PlantedReward()
    search_questions(
        examples(8), resumed, settings(), broken, SPACES, max_active=3, show_progress=False
    )
    assert read(broken) == read(full)
    assert sum(map(len, resumed.calls)) < sum(map(len, uninterrupted.calls))


def test_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "s.jsonl"
    search_questions(examples(2), PlantedReward(), settings(), out, show_progress=False)
    with pytest.raises(ValueError, match="other settings"):
        search_questions(examples(2), PlantedReward(), settings(seed=3), out, show_progress=False)


def test_run_jobs_reports_every_job_once():
    done = []
    jobs = [
        Job("skip_loop", f"synthetic/{i}", QuestionSearch(SPACE, MCTSConfig(10), ROOT, str(i)))
        for i in range(5)
    ]
    progress = run_jobs(
        jobs, PlantedReward(), lambda job: done.append(job.question_id), max_active=2
    )
    assert sorted(done) == [f"synthetic/{i}" for i in range(5)]
    assert progress.simulations == 50 and progress.jobs_done == 5


STORED = Path(__file__).parents[2] / "results" / "search"


@pytest.mark.parametrize(
    "rows",
    [
        "qwen2.5-coder-0.5b-arith-100/supervision.jsonl",
        "qwen2.5-coder-0.5b-arith/supervision.jsonl",
        "qwen2.5-coder-0.5b-arith/supervision.skip.jsonl",
        "qwen2.5-coder-0.5b-arith/supervision.loop.jsonl",
    ],
)
def test_the_committed_searches_replay_exactly_from_their_stored_rewards(rows):
    """Searching again with each stored program's reward reaches the same programs at the
    same simulations and depths as the committed run (the first 12 questions of each file)."""
    for line in (STORED / rows).read_text().splitlines()[:12]:
        row = json.loads(line)
        record = dict(row["settings"])
        space, mcts = record.pop("space"), MCTSConfig(**record.pop("mcts"))
        search = question_search(SearchSettings(**record, mcts=mcts), space, row["id"])
        stored = dict(zip(evaluated_programs(row), row["evaluations"], strict=True))
        while not search.done:
            programs = search.select_wave()
            search.complete_wave([float(stored[p]["strict"]) for p in programs])
        replayed = [(format_program(e.program), e.simulation, e.depth) for e in search.evaluations]
        expected = [(e["program"], e["simulation"], e["depth"]) for e in row["evaluations"]]
        assert replayed == expected, row["id"]
