"""Another vLLM than the supported one: stock engines keep working, PoLar is refused clearly."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import vllm
vllm.__version__ = "0.99.0"  # what another install would report
import vllm_polar
from vllm.engine.arg_utils import EngineArgs
from vllm.v1.engine.input_processor import InputProcessor

vllm_polar.register()
result = {"patched": getattr(InputProcessor.process_inputs, "polar_patched", False)}
stock = EngineArgs(model=sys.argv[1], dtype="float32").create_engine_config()
result["stock_architectures"] = stock.model_config.hf_config.architectures
for name, attempt in {
    "engine": lambda: EngineArgs(
        model=sys.argv[1], dtype="float32", additional_config={"polar": {}}
    ).create_engine_config(),
    "llm": lambda: vllm_polar.LLM,
}.items():
    try:
        attempt()
        result[name] = None
    except RuntimeError as error:
        result[name] = str(error)
print("RESULT " + json.dumps(result))
"""

CLI = """
import sys
import vllm
vllm.__version__ = "0.99.0"
from vllm_polar.entrypoints.cli import main
sys.argv = ["vllm-polar", "serve", sys.argv[1]]
main()
"""


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )


def test_on_another_vllm_stock_engines_work_and_polar_is_refused_with_the_range(checkpoints):
    model = str(checkpoints("qwen3"))
    done = run(SCRIPT, model)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["patched"] is False
    assert result["stock_architectures"] == ["Qwen3ForCausalLM"]
    for refused in (result["engine"], result["llm"]):
        assert refused is not None
        assert "supports vLLM 0.32.x" in refused and "0.99.0 is installed" in refused
    assert "PoLar is off for every engine" in done.stdout + done.stderr


def test_the_cli_on_another_vllm_exits_with_the_range(checkpoints):
    done = run(CLI, str(checkpoints("qwen3")))
    assert done.returncode != 0
    assert "supports vLLM 0.32.x" in done.stderr and "0.99.0 is installed" in done.stderr
