"""The action space: bounds, restricted spaces."""

from __future__ import annotations

from collections import Counter

import pytest

from polar.search.space import SearchSpace
from vllm_polar.program import identity

ROOT = identity(8)


def test_skip_loop_children_are_one_action_away_and_within_bounds():
    space = SearchSpace(max_block=2, max_repeats=3, max_layer_uses=2, min_steps=6, max_steps=10)
    children = space.children(ROOT)
    assert len(children) == len(set(children)) and ROOT not in children
    assert all(6 <= len(c) <= 10 and max(Counter(c).values()) <= 2 for c in children)
    assert (0, 1, 3, 4, 5, 6, 7) in children  # skip step 2
    assert (0, 1, 2, 3, 2, 3, 4, 5, 6, 7) in children  # loop 2-3 twice
    assert (0, 1, 2, 2, 2, 3, 4, 5, 6, 7) not in children  # layer 2 three times
    assert (0, 1, 6, 7) not in children  # too short


def test_repeat_counts_every_run_and_block_bound_holds():
    space = SearchSpace(kind="loop", max_block=1, max_repeats=4, max_layer_uses=4, max_steps=20)
    children = set(space.children(ROOT))
    assert (0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7) in children
    assert (0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7) not in children
    assert (0, 1, 0, 1, 2, 3, 4, 5, 6, 7) not in children  # block of 2 > max_block


@pytest.mark.parametrize("kind", ["skip", "loop"])
def test_restricted_spaces(kind):
    space = SearchSpace(kind=kind, min_steps=1, max_steps=16)
    children = space.children(ROOT)
    assert children
    if kind == "skip":
        assert all(len(c) < len(ROOT) and set(c) < set(ROOT) for c in children)
    else:
        assert all(len(c) > len(ROOT) and set(c) == set(ROOT) for c in children)


def test_bad_bounds_are_rejected():
    with pytest.raises(ValueError, match="space"):
        SearchSpace(kind="reorder", max_steps=10)
    with pytest.raises(ValueError, match="min_steps"):
        SearchSpace(min_steps=9, max_steps=8)
