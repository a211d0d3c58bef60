"""Training: AdamW, 10 warm-up steps then cosine decay, early stopping, validation selection.

Loss per question = BCE(boundary logits, boundary targets) averaged over the ``D`` layers
+ cross-entropy of the op logits at segment starts, averaged over the (weighted) segment starts.

A run trains for ``epochs`` epochs — by default as many as ``MIN_STEPS`` optimisation steps
take, whatever the data size (at most ``MAX_EPOCHS``) — and stops early once the validation
loss has not improved for ``patience`` epochs; it keeps the weights of its lowest validation
loss. Over a grid of runs, the selected one has the best validation top-1 rate (the top-1
decoded program is one of the question's valid programs), ties broken by the lower validation
loss. Runs are seeded and deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from polar.predictor.decoding import decode_batch
from polar.predictor.encoder import pad_tokens
from polar.predictor.labels import Labels
from polar.predictor.network import NetworkConfig, PredictorNetwork

WARMUP_STEPS = 10
WEIGHT_DECAY = 0.01
EVAL_BATCH_SIZE = 256
MIN_STEPS = 1000
"""Optimisation steps a run with the default epoch count takes (unless it stops early)."""
MAX_EPOCHS = 500


@dataclass(frozen=True)
class Hyperparameters:
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int | None = None
    """None: enough epochs for ``MIN_STEPS`` steps on the training split."""
    patience: int = 20
    """Epochs without a lower validation loss before the run stops."""

    def __post_init__(self):
        if not (self.lr > 0 and self.batch_size >= 1 and self.patience >= 1):
            raise ValueError(f"need lr > 0, batch_size >= 1 and patience >= 1, got {self}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"need epochs >= 1 (or None for the default), got {self.epochs}")

    def epochs_for(self, num_train: int) -> int:
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = math.ceil(num_train / self.batch_size)
        return min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))

    def __str__(self) -> str:
        epochs = "auto" if self.epochs is None else self.epochs
        return f"lr {self.lr:g}, batch {self.batch_size}, epochs {epochs}"


PAPER_GRID = [
    Hyperparameters(lr, batch_size, epochs)
    for lr in (1e-4, 3e-4, 5e-4, 8e-4, 1e-3, 3e-3)
    for batch_size in (32, 128, 256)
    for epochs in (3, 10)
]


@dataclass(frozen=True)
class Evaluation:
    loss: float
    top1: float  # fraction of questions whose top-1 program is one of their valid programs


@dataclass
class RunResult:
    """Best epoch (lowest validation loss) of one grid point."""

    hyperparameters: Hyperparameters
    epoch: int
    epochs_run: int
    steps: int
    evaluation: Evaluation
    state_dict: dict[str, torch.Tensor]

    def summary(self) -> dict:
        return {
            **asdict(self.hyperparameters),
            "best_epoch": self.epoch,
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            **asdict(self.evaluation),
        }


def segment_loss(
    boundary_logits: torch.Tensor,
    op_logits: torch.Tensor,
    boundary_targets: torch.Tensor,
    op_targets: torch.Tensor,
) -> torch.Tensor:
    """Mean over the batch of BCE(boundaries) + CE(ops at segment starts).

    ``boundary_* [B, D]``; ``op_* [B, D, 3]``, ``op_targets`` zero away from segment starts.
    """
    boundary_loss = F.binary_cross_entropy_with_logits(
        boundary_logits, boundary_targets, reduction="none"
    ).mean(dim=1)
    op_nll = -(op_targets * F.log_softmax(op_logits, dim=-1)).sum(dim=(1, 2))
    op_loss = op_nll / op_targets.sum(dim=(1, 2))
    return (boundary_loss + op_loss).mean()


def warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``WARMUP_STEPS``, then cosine to 0."""

    def factor(step: int) -> float:
        if step < WARMUP_STEPS:
            return (step + 1) / WARMUP_STEPS
        progress = (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def split_indices(num_questions: int, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded train/validation split of question indices (at least one of each)."""
    if num_questions < 2:
        raise ValueError(f"need at least 2 labelled questions to train, got {num_questions}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = torch.randperm(num_questions, generator=torch.Generator().manual_seed(seed)).tolist()
    num_val = min(num_questions - 1, max(1, round(val_fraction * num_questions)))
    return sorted(order[num_val:]), sorted(order[:num_val])


def batch_inputs(
    embeddings: list[torch.Tensor], labels: Labels, indices: list[int]
) -> tuple[torch.Tensor, ...]:
    """Padded ``tokens [B, T, E]``, ``mask [B, T]`` and the targets of ``indices``."""
    tokens, mask = pad_tokens([embeddings[i] for i in indices])
    return tokens, mask, labels.boundary_targets[indices], labels.op_targets[indices]


@torch.no_grad()
def evaluate(
    network: PredictorNetwork,
    embeddings: list[torch.Tensor],
    labels: Labels,
    indices: list[int],
    max_steps: int,
) -> Evaluation:
    network.eval()
    total_loss, hits = 0.0, 0
    for start in range(0, len(indices), EVAL_BATCH_SIZE):
        batch = indices[start : start + EVAL_BATCH_SIZE]
        tokens, mask, boundary_targets, op_targets = batch_inputs(embeddings, labels, batch)
        boundary_logits, op_logits = network(tokens, mask)
        loss = segment_loss(boundary_logits, op_logits, boundary_targets, op_targets)
        total_loss += loss.item() * len(batch)
        top1 = decode_batch(boundary_logits, op_logits, k=1, max_steps=max_steps)
        hits += sum(
            bool(c) and c[0].program in labels.valid_programs[i] for c, i in zip(top1, batch)
        )
    return Evaluation(loss=total_loss / len(indices), top1=hits / len(indices))


def train_run(
    network_config: NetworkConfig,
    hyperparameters: Hyperparameters,
    embeddings: list[torch.Tensor],
    labels: Labels,
    split: tuple[list[int], list[int]],
    seed: int,
    max_steps: int,
) -> RunResult:
    """Train one grid point; return its epoch of lowest validation loss."""
    torch.manual_seed(seed)
    network = PredictorNetwork(network_config)
    train_indices, val_indices = split
    epochs = hyperparameters.epochs_for(len(train_indices))
    steps_per_epoch = math.ceil(len(train_indices) / hyperparameters.batch_size)
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=hyperparameters.lr, weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps))
    shuffle = torch.Generator().manual_seed(seed)
    best: RunResult | None = None
    steps = 0
    progress = tqdm(total=total_steps, desc=f"train ({hyperparameters})", leave=False)
    for epoch in range(1, epochs + 1):
        network.train()
        order = torch.randperm(len(train_indices), generator=shuffle).tolist()
        for start in range(0, len(order), hyperparameters.batch_size):
            batch = [train_indices[j] for j in order[start : start + hyperparameters.batch_size]]
            tokens, mask, boundary_targets, op_targets = batch_inputs(embeddings, labels, batch)
            loss = segment_loss(*network(tokens, mask), boundary_targets, op_targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.4f}")
        evaluation = evaluate(network, embeddings, labels, val_indices, max_steps)
        if best is None or evaluation.loss < best.evaluation.loss:
            state = {name: t.detach().clone() for name, t in network.state_dict().items()}
            best = RunResult(hyperparameters, epoch, epoch, steps, evaluation, state)
        best.epochs_run, best.steps = epoch, steps
        if epoch - best.epoch >= hyperparameters.patience:
            break
    progress.close()
    return best


def majority_top1(labels: Labels, split: tuple[list[int], list[int]]) -> dict:
    """The baseline a predictor must beat: always answering the program valid for the most
    training questions; its validation top-1 rate."""
    train_indices, val_indices = split
    counts = Counter(p for i in train_indices for p in labels.valid_programs[i])
    program, _ = counts.most_common(1)[0]
    hits = sum(program in labels.valid_programs[i] for i in val_indices)
    return {"program": list(program), "top1": hits / len(val_indices)}


def train(
    network_config: NetworkConfig,
    grid: list[Hyperparameters],
    embeddings: list[torch.Tensor],
    labels: Labels,
    *,
    seed: int,
    val_fraction: float,
    max_steps: int,
) -> tuple[RunResult, list[RunResult], dict]:
    """Train every grid point; return the selected run, all runs (grid order) and the
    majority-program baseline on the same validation split (:func:`majority_top1`)."""
    split = split_indices(len(labels.questions), val_fraction, seed)
    runs = [
        train_run(network_config, hyperparameters, embeddings, labels, split, seed, max_steps)
        for hyperparameters in tqdm(grid, desc="grid", disable=len(grid) == 1)
    ]
    best = max(runs, key=lambda run: (run.evaluation.top1, -run.evaluation.loss))
    return best, runs, majority_top1(labels, split)
