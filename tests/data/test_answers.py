"""Answer extraction and checking on real-looking model outputs."""

from __future__ import annotations

import pytest

from polar.answers import (
    as_number,
    extract_answer,
    extract_boxed,
    extract_choice,
    extract_last_number,
    grade,
    is_correct,
)
from polar.prompts import direct_answer_prompt, direct_answer_text


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # boxed answers, as Qwen2.5-Coder writes them
        ("\\boxed{7}", "7", True),
        ("\\boxed{7}", "8", False),
        ("The answer is \\boxed{18}.", "18", True),
        ("\\boxed{\\frac{3}{4}}", "0.75", True),
        ("\\boxed{\\dfrac{3}{4}}", "3/4", True),
        ("\\boxed{-3}", "-3", True),
        ("x = \\boxed{\\sqrt{8}}", "2\\sqrt{2}", True),
        ("\\boxed{x=4}", "4", True),
        ("\\boxed{2^{3}}", "8", True),
        # units, inside and outside the box
        ("\\boxed{12 \\text{ apples}}", "12", True),
        ("\\boxed{4 \\text{cm}^2}", "4", True),
        ("\\boxed{40 km/h}", "40", True),
        ("\\boxed{5 dollars}", "5", True),
        ("There are 12 apples left.", "12", True),
        # dollars and thousands separators
        ("She pays $1,250.00 in total.", "1250", True),
        ("\\boxed{\\$12}", "12", True),
        ("\\boxed{\\$5.50}", "5.5", True),
        ("\\boxed{1,000}", "1000", True),
        ("The town has 1,000,000 people", "1000000", True),
        # percentages
        ("\\boxed{25\\%}", "25", True),
        ("The discount is 25%.", "25", True),
        # trailing text and several numbers: the box wins, else the last number
        ("\\boxed{12}\n\nThe total is 12 dollars.\n\nQuestion: next one has 99", "12", True),
        ("First 3 + 4 = 7, then 7 * 2 = 14", "14", True),
        ("First 3 + 4 = 7, then 7 * 2 = 14", "7", False),
        ("Tom has 3 + 4 = 7 apples.\nThe answer is 7.\n\nThe answer is 7.", "7", True),
        ("12 times 11 equals 132.", "132", True),
        # a reasoning cut off by the token limit: list numbers are not answers
        ("We follow these steps:\n\n1. Add the eggs.\n2. Subtract.\n3. Calculate the", "3", False),
        ("Steps:\n1. 16 - 3 - 4 = 9 eggs.\n2. 9 * 2 = 18", "18", True),
        # decimals and fractions written differently
        ("It takes 2.50 hours", "5/2", True),
        ("So each gets 0.5", "1/2", True),
        ("\\boxed{0.33}", "1/3", False),
        # nothing usable
        ("I don't know.", "5", False),
        ("", "5", False),
        ("\\boxed{}", "6", False),
        ("\\boxed{two}", "2", False),
    ],
)
def test_lenient_grading(completion: str, gold: str, expected: bool) -> None:
    assert is_correct(completion, gold, "lenient") is expected


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # unevaluated expressions, as programs of layers wrote them for these golds
        ("\\boxed{87 - 26}", "61", False),
        ("\\boxed{19 \\times 3}", "57", False),
        ("\\boxed{64 - 15 + 47}", "96", False),
        ("\\boxed{26 * 8}", "208", False),
        ("\\boxed{19 * 3 = 61}", "61", False),
        ("\\boxed{x=4}", "4", False),
        ("\\boxed{2^{3}}", "8", False),
        # several values, or none
        ("\\boxed{14, 14, 14}", "14", False),
        ("\\boxed{1,10,4,1,2,1}", "1", False),
        ("\\boxed{}", "6", False),
        ("\\boxed{\\text{No eggs}}", "0", False),
        ("I don't know.", "5", False),
        # numbers, however written: units, currency, separators, percent, fractions
        ("\\boxed{61}", "61", True),
        ("\\boxed{61}<|im_end|>", "61", True),
        ("\\boxed{12 \\text{ apples}}", "12", True),
        ("\\boxed{40 km/h}", "40", True),
        ("\\boxed{\\$5.50}", "5.5", True),
        ("\\boxed{1,234}", "1234", True),
        ("\\boxed{1{,}000}", "1000", True),
        ("The town has 1,000,000 people", "1000000", True),
        ("\\boxed{25\\%}", "25", True),
        ("\\boxed{\\frac{3}{4}}", "0.75", True),
        ("\\boxed{-\\dfrac{3}{4}}", "-3/4", True),
        ("It takes 2.50 hours", "5/2", True),
        ("\\boxed{0.33}", "1/3", False),
        ("\\boxed{60}", "61", False),
        # several boxes: the last one; no box: the last number
        ("\\boxed{7} or rather \\boxed{8}", "8", True),
        ("\\boxed{7} or rather \\boxed{8}", "7", False),
        ("First 3 + 4 = 7, then 7 * 2 = 14", "14", True),
        ("12 times 11 equals 132.", "132", True),
    ],
)
def test_strict_grading(completion: str, gold: str, expected: bool) -> None:
    assert is_correct(completion, gold) is expected
    assert is_correct(completion, gold, "strict") is expected


def test_strict_grading_falls_back_to_symbolic_golds() -> None:
    """A gold that is not a number has no value to compare: strict grades it as lenient."""
    assert is_correct("x = \\boxed{\\sqrt{8}}", "2\\sqrt{2}")
    assert not is_correct("\\boxed{\\sqrt{7}}", "2\\sqrt{2}")


def test_grade_reports_the_answer_and_both_gradings() -> None:
    assert grade("\\boxed{87 - 26}", "61") == {
        "answer": "87 - 26",
        "strict": False,
        "lenient": True,
    }
    assert grade("no number", "61") == {"answer": None, "strict": False, "lenient": False}
    with pytest.raises(ValueError, match="grading"):
        is_correct("\\boxed{1}", "1", "exact")


def test_as_number() -> None:
    assert as_number("1,250.00") == 1250
    assert as_number("\\frac{1}{0}") is None and as_number("3/0") is None
    assert as_number("-.5") == as_number("-1/2")
    assert as_number("87 - 26") is None


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        ("\\boxed{B}", "B", True),
        ("\\boxed{(B) 12 meters}", "B", True),
        ("The answer is (C).", "C", True),
        ("The answer is (C).", "B", False),
        ("Answer: D", "D", True),
        ("A. Paris is the capital", "A", True),
        ("I think the result is 12.", "A", False),
    ],
)
def test_multiple_choice(completion: str, gold: str, expected: bool) -> None:
    assert is_correct(completion, gold) is expected


def test_extractors() -> None:
    assert extract_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{\\sqrt{x^{2}}}") == "\\sqrt{x^{2}}"
    assert extract_boxed("\\boxed{unclosed") is None
    assert extract_boxed("no box") is None
    assert extract_last_number("from -3 to 1,250.5 units") == "1,250.5"
    assert extract_last_number("half is 1/2.") == "1/2"
    assert extract_last_number("none") is None
    assert extract_answer("\\boxed{5} then 6") == "5"
    assert extract_answer("5 then 6") == "6"
    assert extract_choice("\\boxed{\\text{E}}") == "E"
    assert extract_choice("no letter here") is None


def test_direct_answer_prompt_uses_chat_template() -> None:
    class ChatTokenizer:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return f"<user>{messages[0]['content']}</user><assistant>"

    text = direct_answer_text("What is 2 + 2?")
    assert text.splitlines() == [
        "Solve the following math problem and output ONLY the final answer directly, formatted "
        "strictly as \\boxed{ANSWER}.",
        "### Problem Start",
        "What is 2 + 2?",
        "### Problem End",
        "Answer:",
    ]
    assert direct_answer_prompt("What is 2 + 2?") == text
    assert (
        direct_answer_prompt("What is 2 + 2?", ChatTokenizer()) == f"<user>{text}</user><assistant>"
    )
