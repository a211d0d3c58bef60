"""``make demo``'s script, end to end on SmolLM2-135M with a tiny predictor."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1800)  # two engine starts and a server on a shared 2-core machine
def test_demo_serves_queries_evaluates_and_stops_the_server(tiny_predictor, tmp_path):
    ckpt, _ = tiny_predictor
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--model", "smollm2-135m"]
    command += ["--ckpt", str(ckpt), "--selection", str(tmp_path / "none.json")]
    command += ["--per-level", "1", "--k", "2", "--port", str(port), "--out", str(tmp_path)]
    command += ["--val-per-level", "1", "--fixed-candidates", "1", "--temperatures", "1.0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "server ready at http://127.0.0.1:" in out and "server stopped" in out
    assert out.count("   A: ") == 3 and "pass@3, one request with n = 3" in out
    assert all(f"   #{i}: " in out for i in (1, 2, 3))
    assert "| Base τ=0 |" in out and "| PoLar |" in out
    assert (tmp_path / "eval" / "results.json").is_file()
    with socket.socket() as sock:  # the server is gone: its port is free again
        sock.bind(("127.0.0.1", port))
