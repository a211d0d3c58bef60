"""MCTS over programs for one question, independent of any model.

The root is the identity program; each simulation walks down by UCB, expands one new child (one
action of the :class:`SearchSpace`), and backs up the binary reward of the leaf's program:

    score(child) = mean reward + c * sqrt(ln N_parent / n_child) - length_penalty * |program| / D

Progressive widening keeps the tree deep at small budgets: a node with ``n`` visits has at most
``ceil(widen_c * n ** widen_alpha)`` children. A child program already in this question's tree
is not added twice. Simulations run in *waves*: :meth:`QuestionSearch.select_wave` picks several
leaves at once, each pending selection counts as a visit with reward 0 (virtual loss) so the wave
spreads out, and :meth:`QuestionSearch.complete_wave` backs up their rewards. A question's tree
depends only on its seed and its rewards, never on which other questions share a batch.
:attr:`QuestionSearch.evaluations` lists the distinct programs in the order the search reached
them, with the simulation that reached each first and its depth (actions from the root), which is
what the oracle-versus-simulations curve and the random-program control are built from.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from polar.search.space import SearchSpace
from vllm_polar.program import Program


@dataclass(frozen=True)
class MCTSConfig:
    simulations: int = 100
    exploration: float = 1.0  # c
    length_penalty: float = 0.1  # lambda
    widen_c: float = 1.0
    widen_alpha: float = 0.5
    wave: int = 8  # simulations selected together (virtual loss between them)


@dataclass(frozen=True)
class Evaluation:
    """A program the search reached: at simulation ``simulation`` (1-based), ``depth`` actions
    below the root."""

    program: Program
    simulation: int
    depth: int


@dataclass(eq=False)
class Node:
    program: Program
    children: list[Node] = field(default_factory=list)
    untried: list[Program] | None = None  # child programs not yet added, drawn from the end
    visits: int = 0
    value: float = 0.0
    pending: int = 0  # selections of the current wave not yet backed up

    def load(self) -> int:
        return self.visits + self.pending


class QuestionSearch:
    """The MCTS tree of one question; ``rewards`` maps every evaluated program to its reward."""

    def __init__(self, space: SearchSpace, config: MCTSConfig, root: Program, seed: str) -> None:
        self.space = space
        self.config = config
        self.depth = len(root)
        self.rng = random.Random(seed)
        self.root = Node(root)
        self.in_tree: set[Program] = {root}
        self.rewards: dict[Program, float] = {}
        self.evaluations: list[Evaluation] = []
        self.simulations = 0
        self.wave: list[list[Node]] = []

    @property
    def done(self) -> bool:
        return self.simulations >= self.config.simulations

    def select_wave(self) -> list[Program]:
        """Leaf programs of the next wave (the first wave is the root alone); may repeat."""
        if self.wave:
            raise RuntimeError("complete_wave must be called before the next select_wave")
        size = 1 if self.root.visits == 0 else self.config.wave
        size = min(size, self.config.simulations - self.simulations)
        for _ in range(size):
            path = self.select_path()
            for node in path:
                node.pending += 1
            self.wave.append(path)
        return [path[-1].program for path in self.wave]

    def complete_wave(self, rewards: list[float]) -> None:
        """Back up one reward per program returned by :meth:`select_wave`, in that order."""
        if len(rewards) != len(self.wave):
            raise ValueError(f"{len(self.wave)} programs selected, {len(rewards)} rewards given")
        for number, (path, reward) in enumerate(zip(self.wave, rewards), self.simulations + 1):
            program = path[-1].program
            if program not in self.rewards:
                self.rewards[program] = float(reward)
                self.evaluations.append(Evaluation(program, number, len(path) - 1))
            for node in path:
                node.pending -= 1
                node.visits += 1
                node.value += reward
        self.simulations += len(self.wave)
        self.wave = []

    def select_path(self) -> list[Node]:
        node = self.root
        path = [node]
        if node.load() == 0:
            return path
        while True:
            child = self.expand(node)
            if child is not None:
                path.append(child)
                return path
            if not node.children:
                return path
            node = max(node.children, key=lambda c: self.score(c, node.load()))
            path.append(node)

    def expand(self, node: Node) -> Node | None:
        """A new child of ``node`` if widening allows one and an unseen program remains."""
        limit = math.ceil(self.config.widen_c * max(node.load(), 1) ** self.config.widen_alpha)
        if len(node.children) >= limit:
            return None
        if node.untried is None:
            node.untried = self.space.children(node.program)
            self.rng.shuffle(node.untried)
        while node.untried:
            program = node.untried.pop()
            if program not in self.in_tree:
                self.in_tree.add(program)
                child = Node(program)
                node.children.append(child)
                return child
        return None

    def score(self, child: Node, parent_load: int) -> float:
        load = child.load()
        mean = child.value / load
        explore = self.config.exploration * math.sqrt(math.log(parent_load) / load)
        return mean + explore - self.config.length_penalty * len(child.program) / self.depth

    def valid_programs(self) -> list[Program]:
        """Programs evaluated with reward 1, shortest first (ties in program order)."""
        return sorted((p for p, r in self.rewards.items() if r >= 1.0), key=lambda p: (len(p), p))

    def invalid_programs(self) -> list[Program]:
        return sorted((p for p, r in self.rewards.items() if r < 1.0), key=lambda p: (len(p), p))
