"""The OpenAI server on loopback: programs via ``vllm_xargs``, HTTP 400 on bad ones."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import openai
import pytest

from tests.runtime.conftest import MAX_STEPS, PROGRAMS
from tests.server import running_server

PROMPT = "Paged attention keeps the key value cache"


@pytest.fixture(scope="module")
def server(checkpoints, tmp_path_factory) -> Iterator[str]:
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(checkpoints("qwen3")),
        "--served-model-name",
        "tiny",
        "--dtype",
        "float32",
        "--max-model-len",
        "256",
        "--additional-config",
        json.dumps({"polar": {"max_steps": MAX_STEPS}}),
    ]
    with running_server(command, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running.url


def complete(client: openai.OpenAI, program: list | None) -> list[int]:
    extra = {"ignore_eos": True, "return_token_ids": True}
    if program is not None:
        extra["vllm_xargs"] = {"polar_program": program}
    response = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, extra_body=extra
    )
    return list(response.choices[0].token_ids)


def test_programs_from_openai_client_match_reference(server, references, checkpoints):
    from transformers import AutoTokenizer

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none")
    prompt = AutoTokenizer.from_pretrained(checkpoints("qwen3"))(PROMPT)["input_ids"]
    for program in (PROGRAMS["segment_repeat"], PROGRAMS["skip"], None):
        expected, _ = references("qwen3").greedy(prompt, program or PROGRAMS["identity"], 8)
        assert complete(client, None if program is None else list(program)) == expected


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ([0, 1, 6], r"polar_program\[2\] = 6 is out of range.*\[0, 5\]"),
        ([], "polar_program must not be empty"),
        ([0, 1.5], r"polar_program\[1\] must be an int"),
        (list(range(6)) * 3, "polar_program has 18 steps.*max_steps = 12"),
        ("0-5", "polar_program must be a list"),
    ],
)
def test_bad_program_is_http_400_and_server_keeps_serving(server, program, message):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError, match=message):
        complete(client, program)
    assert len(complete(client, [0, 1, 2])) == 8
