"""A fault soak of one server with a predictor: 72 concurrent clients per round mixing explicit
and predicted programs, ``n = 3``, streaming, chat and completions, with clients that leave
mid-stream and mid-prediction, bad programs, blank and over-long prompts, and predictor faults.

Afterwards every completed output equals its solo run, no request waited past a bound, the
server still predicts, and its memory stays flat over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass

import openai
import psutil
import pytest
import requests

from tests.server import running_server
from tests.serving.conftest import DEPTH, MAX_TOKENS, questions
from tests.serving.faulty_serve import FAULT, SLOW
from tests.serving.test_server import scrape, serve_command

ROUNDS = 4
BOUND_S = 120
"""Longest any request may take, even under the soak."""
FRONT_END_GROWTH_MB = 32
"""Most the API server process (requests, predictor sidecar, its cache) may grow between the end
of round 2 and the end of the last round."""
ENGINE_GROWTH_MB = 256
"""The same for the engine processes, which also first touch KV-cache pages as more blocks come
into use (measured: +150 MB over rounds 2-5, then flat)."""
EXPLICIT = ([0, 1, 2, 3, *range(5, DEPTH)], [*range(DEPTH), 29])


@dataclass(frozen=True)
class Case:
    """One client's request: ``kind`` says what it does with it."""

    kind: str
    prompt: str | list[dict]
    program: list[int] | str | None = None
    n: int = 1
    stream: bool = False

    @property
    def solo_key(self) -> tuple:
        return (self.kind in ("chat",), str(self.prompt), str(self.program), self.n)


def body(case: Case) -> dict:
    extra = {"ignore_eos": True}
    if case.program is not None:
        extra["vllm_xargs"] = {"polar_program": case.program}
    return extra


async def send(client: openai.AsyncOpenAI, case: Case) -> list[str]:
    """The completion texts of ``case`` (reads the whole stream when streaming)."""
    common = dict(
        model="smol", max_tokens=MAX_TOKENS, temperature=0, n=case.n, extra_body=body(case)
    )
    if isinstance(case.prompt, list):
        if case.stream:
            stream = await client.chat.completions.create(
                messages=case.prompt, stream=True, **common
            )
            parts: dict[int, str] = {}
            async for chunk in stream:
                for choice in chunk.choices:
                    parts[choice.index] = parts.get(choice.index, "") + (choice.delta.content or "")
            return [parts[i] for i in sorted(parts)]
        response = await client.chat.completions.create(messages=case.prompt, **common)
        return [c.message.content for c in sorted(response.choices, key=lambda c: c.index)]
    if case.stream:
        stream = await client.completions.create(prompt=case.prompt, stream=True, **common)
        parts = {}
        async for chunk in stream:
            for choice in chunk.choices:
                parts[choice.index] = parts.get(choice.index, "") + choice.text
        return [parts[i] for i in sorted(parts)]
    response = await client.completions.create(prompt=case.prompt, **common)
    return [c.text for c in sorted(response.choices, key=lambda c: c.index)]


async def leave_mid_stream(client: openai.AsyncOpenAI, case: Case) -> None:
    stream = await client.completions.create(
        model="smol",
        prompt=case.prompt,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        extra_body=body(case),
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 2:
            break
    await stream.close()


async def leave_mid_prediction(client: openai.AsyncOpenAI, case: Case) -> None:
    task = asyncio.ensure_future(send(client, case))
    await asyncio.sleep(0.3)  # queued behind a slow prediction
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def round_cases(round_index: int) -> list[Case]:
    prompts = questions(4)
    chat = [[{"role": "user", "content": q}] for q in prompts[:3]]
    cases = [Case("completion", prompts[i % 8]) for i in range(16)]
    cases += [Case("completion", prompts[i % 8], stream=True) for i in range(8)]
    cases += [Case("completion", prompts[i % 4], EXPLICIT[i % 2]) for i in range(8)]
    cases += [Case("completion", prompts[i + 8], n=3) for i in range(4)]
    cases += [Case("chat", chat[i % 3], stream=i % 2 == 1) for i in range(6)]
    cases += [Case("completion", f"{FAULT} {prompts[i]}") for i in range(6)]
    cases += [Case("completion", f"{SLOW} {prompts[i]}") for i in range(4)]
    cases += [Case("leave mid-stream", prompts[i]) for i in range(6)]
    cases += [
        Case("leave mid-prediction", f"{prompts[i]} (round {round_index}, client {i})")
        for i in range(6)
    ]
    cases += [Case("bad program", prompts[0], p) for p in ([0, DEPTH], [-1], [], "0-3")]
    cases += [Case("blank", p) for p in ("", " ")]
    cases += [Case("over-long", "word " * 2000), Case("over-long", "many " * 3000)]
    return cases


async def run_case(client: openai.AsyncOpenAI, case: Case):
    """The texts of a completed case, or the error it was answered with, within BOUND_S."""

    async def attempt():
        if case.kind == "leave mid-stream":
            return await leave_mid_stream(client, case)
        if case.kind == "leave mid-prediction":
            return await leave_mid_prediction(client, case)
        try:
            return await send(client, case)
        except openai.APIStatusError as error:
            return error

    return await asyncio.wait_for(attempt(), BOUND_S)


def server_memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory of the API server process and of its engine processes together."""
    process = psutil.Process(pid)
    engine = sum(child.memory_info().rss for child in process.children(recursive=True))
    return process.memory_info().rss / 2**20, engine / 2**20


@pytest.fixture(scope="module")
def faulty_server(smollm2, predictor_dir, tmp_path_factory):
    # vllm-polar serve, with the faults injected in the server process
    command = [sys.executable, "-m", "tests.serving.faulty_serve"]
    command += serve_command(smollm2, predictor_dir)[1:]
    log = tmp_path_factory.mktemp("soak") / "server.log"
    with running_server(command, log) as server:
        yield server


def test_the_server_survives_a_fault_soak(faulty_server):
    url = faulty_server.url
    completed_kinds = ("completion", "chat")

    async def soak():
        client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=BOUND_S
        )
        solo: dict[tuple, list[str]] = {}
        for case in round_cases(0):
            if case.kind in completed_kinds and case.solo_key not in solo:
                alone = Case(case.kind, case.prompt, case.program, case.n)
                solo[case.solo_key] = await send(client, alone)
        before = scrape(url)
        memory = []
        for round_index in range(ROUNDS):
            cases = round_cases(round_index)
            results = await asyncio.gather(*(run_case(client, c) for c in cases))
            for case, result in zip(cases, results):
                if case.kind in completed_kinds:
                    assert result == solo[case.solo_key], f"{case} differs from its solo run"
                elif case.kind in ("bad program", "over-long"):
                    assert isinstance(result, openai.BadRequestError), f"{case}: {result!r}"
                    if case.kind == "bad program":
                        assert "polar_program" in str(result)
                elif case.kind == "blank":
                    assert not isinstance(result, openai.InternalServerError), f"{case}: {result!r}"
            memory.append(server_memory_mb(faulty_server.pid))
        fresh = Case("completion", f"{questions(1)[2]} Asked once, after the soak.")
        assert len(await asyncio.wait_for(send(client, fresh), BOUND_S)) == 1
        await client.close()
        return before, memory

    before, memory = asyncio.run(soak())
    after = scrape(url)
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    timeouts = ("polar:predictor_fallbacks_total", (("reason", "timeout"),))
    errors = ("polar:predictor_fallbacks_total", (("reason", "error"),))
    assert after[timeouts] == before[timeouts], "a prediction waited past its bound"
    assert after[errors] - before[errors] >= 6 * ROUNDS  # every injected fault, alone
    front, engines = zip(*memory)
    assert front[-1] - front[1] < FRONT_END_GROWTH_MB, f"API server memory by round (MB): {front}"
    assert engines[-1] - engines[1] < ENGINE_GROWTH_MB, f"engine memory by round (MB): {engines}"
