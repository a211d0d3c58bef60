"""Answer extraction and grading: ``is_correct(completion, gold, grading)`` and ``grade``.

Extraction takes the last ``\\boxed{…}`` (nested braces allowed) and falls back to the last number
in the text, because small models rarely box. Multiple-choice golds (a single letter A–J) are
compared by letter. Other golds are graded one of two ways (``GRADINGS``):

``strict`` (the default)  the answer must *be a number* — an integer, a decimal or a fraction
    (``3/4``, ``\\frac{3}{4}``), written with or without ``$``, thousands separators, ``%`` or a
    unit (``12 apples``, ``4 \\text{cm}``) — equal to the gold number by value.  An expression
    (``87 - 26``, ``19 \\times 3``, ``x = 4``, ``2^{3}``) is wrong even when it evaluates to gold.
    A gold that is not a plain number (a symbolic DART-Math answer) has no number to compare,
    so it is graded as in ``lenient``.
``lenient``  symbolic equivalence by ``math-verify`` after the same light normalization, so
    ``\\boxed{87 - 26}`` is right for 61.

String equality is never the test.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from math_verify import parse, verify

CHOICE_LETTERS = "ABCDEFGHIJ"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?%?|-?\.\d+%?")
LIST_MARKER = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|step \d+:)[ \t]+(?=[^\s\d])", re.IGNORECASE)
THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}")
UNIT_AFTER_TEXT = re.compile(r"(\\(?:text|mathrm|mbox)\{[^{}]*\})\^\{?\d\}?")
NUMBER_WITH_UNIT = re.compile(r"^(-?[\d.,]+(?:/\d+)?%?)\s+[A-Za-z]{2,}[A-Za-z/.\s]*$")
GRADINGS = ("strict", "lenient")
DECIMAL = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")
SLASH_FRACTION = re.compile(r"^(-?\d+)\s*/\s*(\d+)$")
LATEX_FRACTION = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?([A-J])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])[).:]?(?![A-Za-z])"),
    re.compile(r"\(([A-J])\)"),
)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` or ``\\fbox{…}``, nested braces kept; None if absent
    or unclosed."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i].strip()
    return None


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` as written (``-1,234.5``, ``3/4``, ``25%``); None if none.

    Numbers that only mark list items ("2. Subtract ...") are not answers and are skipped.
    """
    numbers = NUMBER.findall(LIST_MARKER.sub("", text.replace("\\%", "%")))
    return numbers[-1].rstrip(",") if numbers else None


def extract_answer(completion: str) -> str | None:
    """The final answer: the last boxed expression, else the last number, else None."""
    boxed = extract_boxed(completion)
    return boxed if boxed is not None else extract_last_number(completion)


def extract_choice(completion: str, letters: str = CHOICE_LETTERS) -> str | None:
    """The chosen option letter (``"A"``…``"J"``) or None.

    Looks at a boxed answer first (``\\boxed{B}``, ``\\boxed{(B) 12}``), then at phrases like
    "the answer is (C)", a leading "D." or "(D)", in that order.
    """
    boxed = extract_boxed(completion)
    candidates = [boxed] if boxed is not None else []
    candidates.append(completion)
    for text in candidates:
        text = TEXT_COMMAND.sub(lambda m: m.group(0).split("{", 1)[1][:-1], text)
        for pattern in CHOICE_PATTERNS:
            match = pattern.search(text)
            if match and match.group(1).upper() in letters:
                return match.group(1).upper()
    return None


def normalize(answer: str) -> str:
    """Drop what math-verify should not see: dollars, thousands commas, units, spacing."""
    answer = TEXT_COMMAND.sub("", UNIT_AFTER_TEXT.sub(r"\1", answer))
    answer = answer.replace("\\$", "").replace("$", "").replace("\\,", "").replace("\\!", "")
    answer = THOUSANDS_COMMA.sub("", answer).strip().rstrip(".").strip()
    return NUMBER_WITH_UNIT.sub(r"\1", answer)


def equivalent(answer: str, gold: str) -> bool:
    """Whether two answer strings are mathematically equal according to math-verify."""
    answer, gold = normalize(answer), normalize(gold)
    if not answer or not gold:
        return False
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    parsed_gold = parse(f"${gold}$", parsing_timeout=timeout)
    parsed_answer = parse(f"${answer}$", parsing_timeout=timeout)
    if not parsed_answer:  # math-verify could not read it as LaTeX; try it as plain text
        parsed_answer = parse(answer, parsing_timeout=timeout)
    return bool(parsed_gold) and verify(parsed_gold, parsed_answer, timeout_seconds=timeout)


def as_number(answer: str) -> Fraction | None:
    """The value of an answer that is a plain number (see the module docstring), else None."""
    text = normalize(answer.replace("{,}", "").replace("\\%", "%")).rstrip("%").strip()
    if DECIMAL.match(text):
        return Fraction(text)
    if match := SLASH_FRACTION.match(text):
        return Fraction(int(match[1]), int(match[2])) if int(match[2]) else None
    if match := LATEX_FRACTION.match(text):
        value = Fraction(int(match[2]), int(match[3])) if int(match[3]) else None
        return -value if match[1] and value is not None else value
    return None


def is_multiple_choice(gold: str) -> bool:
    return len(gold.strip()) == 1 and gold.strip() in CHOICE_LETTERS


def is_correct(completion: str, gold: str, grading: str = "strict") -> bool:
    """Whether ``completion`` (raw model text) answers ``gold`` (a letter A–J or a math answer)
    under ``grading`` (``"strict"`` or ``"lenient"``, see the module docstring)."""
    if grading not in GRADINGS:
        raise ValueError(f"grading must be one of {GRADINGS}, got {grading!r}")
    if is_multiple_choice(gold):
        return extract_choice(completion) == gold.strip()
    answer = extract_answer(completion)
    if answer is None:
        return False
    gold_value = as_number(gold) if grading == "strict" else None
    if gold_value is None:
        return equivalent(answer, gold)
    return as_number(answer) == gold_value


def grade(completion: str, gold: str) -> dict[str, str | bool | None]:
    """The extracted answer and both gradings of ``completion``: what a row stores."""
    return {
        "answer": extract_answer(completion),
        **{grading: is_correct(completion, gold, grading) for grading in GRADINGS},
    }
