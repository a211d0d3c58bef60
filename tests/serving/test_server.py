"""``vllm-polar serve MODEL --polar-predictor CKPT`` with the stock ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from vllm.engine.arg_utils import EngineArgs

from tests.server import free_port, running_server
from tests.serving.conftest import DEPTH, MAX_TOKENS, greedy, questions

VLLM_POLAR = str(Path(sys.executable).parent / "vllm-polar")
EXTRA = {"ignore_eos": True}


def serve_command(model: Path, predictor: Path | str) -> list[str]:
    return [
        VLLM_POLAR,
        "serve",
        str(model),
        "--polar-predictor",
        str(predictor),
        "--served-model-name",
        "smol",
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
    ]


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("polar_server") / "server.log"


@pytest.fixture(scope="module")
def server(smollm2, predictor_dir, server_log) -> Iterator[str]:
    with running_server(serve_command(smollm2, predictor_dir), server_log) as running:
        yield running.url


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)


def complete(client, prompt: str, extra_body: dict | None = None, **kwargs) -> list[str]:
    response = client.completions.create(
        model="smol",
        prompt=prompt,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={**EXTRA, **(extra_body or {})},
        **kwargs,
    )
    return [choice.text for choice in sorted(response.choices, key=lambda c: c.index)]


def test_plain_openai_completions_run_the_predictors_program(client, offline_llm, predictor):
    prompts = questions(1)
    top1 = [c[0].program for c in predictor.predict(prompts, 1)]
    expected = [o.outputs[0].text for o in offline_llm.generate(prompts, greedy(), programs=top1)]
    for prompt, text in zip(prompts, expected):
        assert complete(client, prompt) == [text]
        stream = client.completions.create(
            model="smol",
            prompt=prompt,
            max_tokens=MAX_TOKENS,
            temperature=0,
            extra_body=EXTRA,
            stream=True,
        )
        assert "".join(chunk.choices[0].text for chunk in stream) == text


def test_plain_openai_chat_matches_offline_chat(client, offline_llm):
    messages = [{"role": "user", "content": questions(1)[1]}]
    [expected] = offline_llm.chat([messages], greedy(), use_tqdm=False)
    response = client.chat.completions.create(
        model="smol", messages=messages, max_tokens=MAX_TOKENS, temperature=0, extra_body=EXTRA
    )
    assert response.choices[0].message.content == expected.outputs[0].text
    stream = client.chat.completions.create(
        model="smol",
        messages=messages,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body=EXTRA,
        stream=True,
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == expected.outputs[0].text


def test_n3_gives_three_completions_under_three_distinct_programs(client, offline_llm, predictor):
    prompt = questions(1)[2]
    top3 = [c.program for c in predictor.predict([prompt], 3)[0]]
    assert len(set(top3)) == 3
    expected = [
        offline_llm.generate([prompt], greedy(), programs=[p])[0].outputs[0].text for p in top3
    ]
    assert complete(client, prompt, n=3) == expected


def test_concurrent_mixed_requests(server, client):
    prompts = questions(2)
    explicit = [(0, 1, 2, 3, *range(5, DEPTH)), tuple(range(DEPTH)) + (29,)]
    invalid = [[0, DEPTH], [], "0-3"]
    valid_cases = [(p, None) for p in prompts] + [(prompts[0], list(e)) for e in explicit]
    solo = {}
    for prompt, program in valid_cases:
        extra = {**EXTRA, **({"vllm_xargs": {"polar_program": program}} if program else {})}
        response = client.completions.create(
            model="smol", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0, extra_body=extra
        )
        solo[(prompt, json.dumps(program))] = response.choices[0].text

    cases = [valid_cases[i % len(valid_cases)] for i in range(26)]
    cases += [(prompts[i % len(prompts)], invalid[i % len(invalid)]) for i in range(6)]

    async def run_all():
        aclient = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)

        async def one(prompt, program):
            extra = {**EXTRA}
            if program is not None:
                extra["vllm_xargs"] = {"polar_program": program}
            try:
                response = await aclient.completions.create(
                    model="smol",
                    prompt=prompt,
                    max_tokens=MAX_TOKENS,
                    temperature=0,
                    extra_body=extra,
                )
            except openai.BadRequestError as error:
                return error
            return response.choices[0].text

        return await asyncio.gather(*(one(p, prog) for p, prog in cases))

    results = asyncio.run(run_all())
    assert len(results) == 32
    for (prompt, program), result in zip(cases, results):
        if program in invalid:
            assert isinstance(result, openai.BadRequestError)
            assert "polar_program" in str(result)
        else:
            assert result == solo[(prompt, json.dumps(program))]
    assert len(complete(client, prompts[0])) == 1  # still serving


def scrape(server: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the server's ``/metrics``: (name, sorted labels) -> value."""
    text = requests.get(f"{server}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_move_by_what_the_requests_ran(server, client, predictor):
    program = [0, 1, 2, 2, *range(3, DEPTH)]  # 31 steps over 30 distinct layers
    fresh = "A question this server has not seen: how many legs do 3 spiders have?"
    before = scrape(server)
    complete(
        client, questions(1)[0], n=2, extra_body={**EXTRA, "vllm_xargs": {"polar_program": program}}
    )
    complete(client, fresh)  # one prediction (not cached)
    complete(client, " ")  # a blank prompt: the identity, without the predictor
    after = scrape(server)

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert moved("polar:program_steps_count") == 4
    [[predicted]] = predictor.predict([fresh], 1)
    assert moved("polar:program_steps_sum") == 2 * 31 + len(predicted.program) + DEPTH
    assert moved("polar:program_unique_layers_count") == 4
    assert moved("polar:predictor_latency_seconds_count") == 1
    assert moved("polar:predictor_fallbacks_total", reason="blank prompt") == 1
    assert moved("polar:predictor_fallbacks_total", reason="error") == 0


def kv_pages_held(samples: dict[tuple[str, tuple], float]) -> dict[int, float]:
    return {
        int(dict(labels)["steps"]): value
        for (name, labels), value in samples.items()
        if name == "polar:kv_pages_held"
    }


def pool_and_block(samples: dict[tuple[str, tuple], float]) -> tuple[int, int]:
    """The engine's KV pool (blocks, null block included) and block size, from ``/metrics``."""
    [config] = [dict(labels) for (name, labels) in samples if name == "vllm:cache_config_info"]
    return int(config["num_gpu_blocks"]), int(config["block_size"])


def test_metrics_show_kv_pages_held_per_program_step_count(server, client):
    """Two streams under programs of 29 and 31 steps hold pages in 29 and 31 slots: mid-stream
    each count is a multiple of its steps, and together they are the pool's usage as vLLM's own
    gauge reports it; once both finish, both read 0."""
    programs = {29: [*range(5), *range(6, DEPTH)], 31: [*range(10), 9, *range(10, DEPTH)]}
    streams = []
    for steps, program in programs.items():
        stream = client.completions.create(
            model="smol",
            prompt=f"Count slowly from one to a thousand, {steps} numbers per line:",
            max_tokens=300,
            temperature=0,
            extra_body={**EXTRA, "vllm_xargs": {"polar_program": program}},
            stream=True,
        )
        next(iter(stream))  # prefilled, now decoding
        streams.append(stream)
    during = scrape(server)
    for stream in streams:
        assert len("".join(chunk.choices[0].text for chunk in stream)) > 0
    after = scrape(server)
    for _ in range(50):  # the stats of the last step may land just after the last chunk
        if not any(kv_pages_held(after).values()):
            break
        time.sleep(0.1)
        after = scrape(server)

    held = kv_pages_held(during)
    pool, block = pool_and_block(during)
    for steps in programs:  # one request each, between its prompt's blocks and its last ones
        assert held[steps] % steps == 0
        assert 1 <= held[steps] // steps <= -(-(64 + 300) // block), held
    [usage] = [v for (name, _), v in during.items() if name == "vllm:kv_cache_usage_perc"]
    assert sum(held.values()) == pytest.approx(usage * (pool - 1), abs=0.5)
    assert kv_pages_held(after)[29] == kv_pages_held(after)[31] == 0


def test_kv_pool_is_logged_in_pages_before_the_first_request(server, server_log):
    lines = server_log.read_text().splitlines()
    [logged] = [i for i, line in enumerate(lines) if "PoLar KV pool:" in line]
    requests_at = [i for i, line in enumerate(lines) if '"POST /v1/' in line]
    first_request = requests_at[0] if requests_at else len(lines)
    assert logged < first_request
    pool, block = pool_and_block(scrape(server))
    pages = pool - 1  # vLLM keeps one back as its null block
    assert (
        f"PoLar KV pool: {pages} pages of {block} tokens, one per slot a request's program uses: "
        f"{pages // DEPTH * block} tokens at the identity ({DEPTH} steps)"
    ) in lines[logged]


def engine_config_with(model: Path, predictor: Path):
    args = EngineArgs(
        model=str(model),
        dtype="float32",
        additional_config={"polar": {"predictor": str(predictor)}},
    )
    return args.create_engine_config()


def test_missing_checkpoint_fails_at_start(smollm2, tmp_path):
    with pytest.raises(ValueError, match="missing config.json"):
        engine_config_with(smollm2, tmp_path / "nowhere")


def test_corrupt_checkpoint_fails_at_start(smollm2, predictor_dir, tmp_path):
    corrupt = tmp_path / "ckpt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((predictor_dir / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        engine_config_with(smollm2, corrupt)


def test_depth_mismatched_checkpoint_fails_at_start(smollm2, predictor_dir, tmp_path):
    mismatched = tmp_path / "ckpt"
    mismatched.mkdir()
    config = json.loads((predictor_dir / "config.json").read_text())
    config["num_layers"] = 36
    (mismatched / "config.json").write_text(json.dumps(config))
    (mismatched / "model.safetensors").symlink_to(predictor_dir / "model.safetensors")
    with pytest.raises(ValueError, match="depth 36 but the model has depth 30"):
        engine_config_with(smollm2, mismatched)


def test_cli_with_missing_checkpoint_exits_with_the_reason(smollm2, tmp_path):
    result = subprocess.run(
        [*serve_command(smollm2, tmp_path / "nowhere"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "missing config.json" in result.stdout + result.stderr
