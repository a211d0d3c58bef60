"""Supervision format, MCTS importer and segment-form targets."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polar.predictor.decoding import decode
from polar.predictor.labels import (
    SupervisionRow,
    build_labels,
    import_mcts_samples,
    program_weights,
    read_supervision,
    write_supervision,
)
from polar.predictor.segments import from_segments, to_segments
from tests.predictor.test_segments import segment_forms
from vllm_polar.program import ProgramError, identity


@st.composite
def segment_form_programs(draw, max_layers=12):
    """(num_layers, program) for a random segment form that computes a non-empty program."""
    boundaries, ops = draw(segment_forms(max_layers))
    program = from_segments(boundaries, ops) or identity(len(boundaries))
    return len(boundaries), program


@settings(max_examples=200, deadline=None)
@given(segment_form_programs())
def test_label_round_trip(case):
    """program -> targets -> confident logits -> decoded top-1 is the program again."""
    num_layers, program = case
    labels = build_labels([SupervisionRow("q", "a", [program])], num_layers)
    boundary_target, op_target = labels.boundary_targets[0], labels.op_targets[0]
    form = to_segments(program, num_layers)
    assert boundary_target.bool().tolist() == list(form.boundaries)
    assert op_target.sum().item() == len(form.ops)
    boundary_logits = (boundary_target * 2 - 1).double().numpy() * 10
    op_logits = (op_target * 20 - 10).double().numpy()
    assert decode(boundary_logits, op_logits, k=1)[0].program == program


def test_jsonl_round_trip(tmp_path):
    rows = [
        SupervisionRow("What is 2+2?", "4", [(0, 1, 2), (0, 2)], [(1,)], True),
        SupervisionRow("And 3+3?", "6", [(0, 0, 1, 2)], [], None),
    ]
    path = tmp_path / "supervision.jsonl"
    write_supervision(rows, path)
    assert read_supervision(path) == rows
    record = json.loads(path.read_text().splitlines()[0])
    assert record == {
        "question": "What is 2+2?",
        "answer": "4",
        "valid_programs": [[0, 1, 2], [0, 2]],
        "invalid_programs": [[1]],
        "base_correct": True,
    }


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"answer": "1", "valid_programs": []}', "question"),
        ('{"question": "q", "answer": "1", "valid_programs": [[0, "a"]]}', "int"),
        ('{"question": "q", "answer": "1", "valid_programs": [[0]], "base_correct": 1}', "base"),
        ("not json", "bad supervision row"),
    ],
)
def test_bad_supervision_rows_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok", "answer": "1", "valid_programs": [[0]]}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"bad.jsonl:2: .*{message}"):
        read_supervision(path)


MCTS_SAMPLE = {
    "question": "Solve x+1=2",
    "gt_ans": "\\boxed{1}",
    "initial_score": 0.0,
    "final_valid_transitions": [[0, 1, 2, 4, 5], [0, 1, 2, 2, 3, 4, 5]],
    "final_invalid_transitions": [[0, 1, 3, 4, 5]],
    "sample_info": {"query_id": "7"},
}


@pytest.mark.parametrize("layout", ["samples", "list", "mapping"])
def test_import_mcts_layouts(tmp_path, layout):
    second = {
        "sample_info": {"question": "Other?", "ground_truth": "3"},
        "initial_transition_metric": 1.0,
        "final_valid_transitions": [[0, 1, 2, 3, 4, 5]],
    }
    samples = [MCTS_SAMPLE, second]
    data = {
        "samples": {"samples": samples},
        "list": samples,
        "mapping": {"a": MCTS_SAMPLE, "b": second},
    }[layout]
    path = tmp_path / "merged_mcts_samples.json"
    path.write_text(json.dumps(data))
    rows = import_mcts_samples(path)
    assert rows == [
        SupervisionRow(
            "Solve x+1=2",
            "\\boxed{1}",
            [(0, 1, 2, 4, 5), (0, 1, 2, 2, 3, 4, 5)],
            [(0, 1, 3, 4, 5)],
            base_correct=False,
        ),
        SupervisionRow("Other?", "3", [(0, 1, 2, 3, 4, 5)], [], base_correct=True),
    ]


def test_import_mcts_names_the_bad_sample(tmp_path):
    path = tmp_path / "merged_mcts_samples.json"
    path.write_text(json.dumps([MCTS_SAMPLE, {"question": "no programs"}]))
    with pytest.raises(ValueError, match="sample 1.*final_valid_transitions"):
        import_mcts_samples(path)


def test_identity_down_weighted_only_when_a_shorter_program_exists():
    full = identity(6)
    shorter = (0, 1, 2, 3, 4)
    longer = (0, 1, 2, 3, 4, 5, 4, 5)
    assert program_weights([full, shorter], 6, 0.3) == pytest.approx([0.3 / 1.3, 1 / 1.3])
    assert program_weights([full, longer], 6, 0.3) == pytest.approx([0.5, 0.5])
    assert program_weights([shorter, longer], 6, 0.3) == pytest.approx([0.5, 0.5])


def test_targets_are_weighted_and_normalised_per_question():
    full = identity(6)
    skip_last = (0, 1, 2, 3)  # segments 0-3 keep, 4-5 skip
    labels = build_labels([SupervisionRow("q", "a", [full, skip_last])], 6, identity_weight=0.5)
    w_full, w_skip = 0.5 / 1.5, 1 / 1.5
    # identity parses as 0-3 keep, 4-5 keep: same boundaries, op at 4 differs
    torch.testing.assert_close(labels.boundary_targets[0], torch.tensor([1.0, 0, 0, 0, 1, 0]))
    op_targets = labels.op_targets[0]
    assert op_targets[0].tolist() == pytest.approx([0, 1, 0])
    assert op_targets[4].tolist() == pytest.approx([w_skip, w_full, 0])
    assert op_targets[[1, 2, 3, 5]].abs().sum() == 0
    assert labels.stats.identity_downweighted == 1


def test_dropped_programs_are_counted_and_rows_merged():
    rows = [
        SupervisionRow("q1", "a", [(0, 1, 2, 3), (3, 2, 1, 0)], base_correct=True),
        SupervisionRow("q1", "a", [(0, 1, 2, 3), (0, 1, 2, 3, 0, 1, 2, 3)]),
        SupervisionRow("q2", "a", [(1, 0)]),
        SupervisionRow("q3", "a", []),
    ]
    labels = build_labels(rows, 4, max_steps=6)
    stats = labels.stats
    assert labels.questions == ["q1"]
    assert labels.valid_programs == [frozenset({(0, 1, 2, 3)})]
    assert (stats.questions, stats.questions_with_labels, stats.base_correct) == (3, 1, 1)
    assert (stats.programs, stats.programs_kept) == (4, 1)
    assert stats.dropped_no_segment_form == 2  # reversed order, (1, 0)
    assert stats.dropped_over_budget == 1  # 8 steps > 6
    assert stats.max_steps_observed == 4


def test_program_for_another_depth_is_an_error():
    with pytest.raises(ProgramError, match="out of range"):
        build_labels([SupervisionRow("q", "a", [tuple(range(36))])], 30)


def test_no_usable_program_is_an_error():
    with pytest.raises(ValueError, match="no question has a usable valid program"):
        build_labels([SupervisionRow("q", "a", [(2, 1, 0)])], 4)


def test_decode_of_soft_targets_prefers_the_heavier_program():
    labels = build_labels([SupervisionRow("q", "a", [identity(6), (0, 1, 2, 3)])], 6)
    boundary_logits = torch.logit(labels.boundary_targets[0], eps=1e-6).double().numpy()
    op_logits = torch.log(labels.op_targets[0] + 1e-6).double().numpy()
    assert decode(boundary_logits, op_logits, k=1)[0].program == (0, 1, 2, 3)
