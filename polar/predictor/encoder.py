"""The frozen sentence-transformers encoder: texts -> token embeddings, with a disk cache.

Any sentence-transformers model works (a name or a local path). Training encodes each question
once: :class:`TokenEmbeddingCache` stores one safetensors file per (encoder, text), so epochs,
grid points and later runs on the same questions never run the encoder again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from tqdm import tqdm

from polar.predictor.resolve import resolve_model

ENCODE_BATCH_SIZE = 32


def load_encoder(name_or_path: str, device: str = "cpu") -> SentenceTransformer:
    encoder = SentenceTransformer(resolve_model(name_or_path), device=device)
    encoder.eval()
    return encoder


def encode_tokens(encoder: SentenceTransformer, texts: list[str]) -> list[torch.Tensor]:
    """Token embeddings ``[T_i, E]`` (float32) of each text's real tokens.

    Padding is removed with the attention mask, so left-padding encoders work too.
    """
    if any(not text.strip() for text in texts):
        raise ValueError("cannot encode an empty question")
    with torch.inference_mode():
        outputs = encoder.encode(
            texts,
            batch_size=ENCODE_BATCH_SIZE,
            output_value=None,
            convert_to_numpy=False,
            show_progress_bar=False,
        )
    return [
        output["token_embeddings"][output["attention_mask"].bool()].float().cpu()
        for output in outputs
    ]


def pad_tokens(token_embeddings: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[T_i, E]`` tensors into ``embeddings [B, T, E]`` and ``mask [B, T]`` (bool)."""
    embeddings = torch.nn.utils.rnn.pad_sequence(token_embeddings, batch_first=True)
    lengths = torch.tensor([len(t) for t in token_embeddings])
    mask = torch.arange(embeddings.shape[1])[None, :] < lengths[:, None]
    return embeddings, mask


def encoder_key(encoder_id: str) -> str:
    """Cache key of an encoder: its id, plus the file names and sizes of a local folder."""
    digest = hashlib.sha256(encoder_id.encode())
    path = Path(encoder_id)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"\0{file.relative_to(path)}\0{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class TokenEmbeddingCache:
    """Token embeddings of texts under ``root/<encoder key>/<text sha256>.safetensors``.

    Stored as float16 ``[T, E]``. The encoder is loaded (by ``load``) only on a cache miss.
    """

    def __init__(
        self,
        root: Path,
        encoder_id: str,
        load: Callable[[str], SentenceTransformer] = load_encoder,
    ):
        self.encoder_id = resolve_model(encoder_id)
        self.directory = Path(root) / encoder_key(self.encoder_id)
        self.load = load

    def path(self, text: str) -> Path:
        name = hashlib.sha256(text.encode()).hexdigest()
        return self.directory / name[:2] / f"{name}.safetensors"

    def get(self, texts: list[str]) -> list[torch.Tensor]:
        """``[T_i, E]`` float16 token embeddings for each text, encoding only the misses."""
        missing = sorted({text for text in texts if not self.path(text).exists()})
        if missing:
            self.encode_and_store(missing)
        return [load_file(self.path(text))["tokens"] for text in texts]

    def encode_and_store(self, texts: list[str]) -> None:
        encoder = self.load(self.encoder_id)
        chunks = range(0, len(texts), ENCODE_BATCH_SIZE)
        for start in tqdm(chunks, desc="encoding questions", unit="batch"):
            chunk = texts[start : start + ENCODE_BATCH_SIZE]
            for text, tokens in zip(chunk, encode_tokens(encoder, chunk)):
                path = self.path(text)
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".partial")
                save_file({"tokens": tokens.half().contiguous()}, partial)
                partial.replace(path)
