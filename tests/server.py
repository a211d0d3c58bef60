"""Start an OpenAI-compatible server subprocess on 127.0.0.1 and wait until it is healthy."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    """Base URL, ``http://127.0.0.1:P``."""
    pid: int
    """Process id of the server (its engine processes are its children)."""


@contextmanager
def running_server(command: list[str], log: Path, timeout: float = 400) -> Iterator[Server]:
    """Run ``command --host 127.0.0.1 --port P``; yields it once healthy, stops it after."""
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                assert process.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
                try:
                    if requests.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(1)
            else:
                pytest.fail(f"server did not start:\n{log.read_text()[-3000:]}")
            yield Server(url, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)
