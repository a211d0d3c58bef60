"""Metrics of an evaluation, its markdown table and plots.

pass@j per method, level and grading: ranked methods (the predictor's top-k, the fixed
programs) count their first j tries; exchangeable ones (samples, random programs) use the
unbiased estimator over their tries (:mod:`polar.metrics`). Intervals are 95 % Wilson. Paired
tests (exact McNemar): PoLar pass@1 against Base, and PoLar pass@k against every other method's
pass@k (a method's own k tries, whatever its estimator).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from polar.answers import GRADINGS
from polar.metrics import mcnemar, pass_at, percent, ranked_pass_at, wilson

LABELS = {
    "base": "Base τ=0",
    "sampling": "Base sampling",
    "polar": "PoLar",
    "polar_top1": "PoLar (n = 1)",
    "fixed": "Fixed best",
    "random": "Random programs",
    "shortgpt": "ShortGPT",
}


def tries_by_question(run) -> dict[str, list]:
    """Question id → its attempts in try order."""
    tries: dict[str, list] = defaultdict(list)
    for attempt in sorted(run.attempts, key=lambda a: (a.id, a.attempt)):
        tries[attempt.id].append(attempt)
    return dict(tries)


def question_pass(attempts: list, j: int, grading: str, ranked: bool) -> float:
    correct = [bool(getattr(a, grading)) for a in attempts]
    if ranked:
        return ranked_pass_at(correct, j)
    return pass_at(len(correct), sum(correct), min(j, len(correct)))


def level_of(attempts: list) -> str:
    return str(attempts[0].level) if attempts[0].level is not None else "all"


def method_metrics(run, k: int, ranked: bool) -> dict[str, Any]:
    tries = tries_by_question(run)
    most = min(k, max(len(t) for t in tries.values()))
    levels = sorted({level_of(t) for t in tries.values()} - {"all"}, key=str)
    table: dict[str, Any] = {}
    for level in [*levels, "all"]:
        picked = [t for t in tries.values() if level == "all" or level_of(t) == level]
        entry: dict[str, Any] = {"n": len(picked)}
        for grading in GRADINGS:
            for j in range(1, most + 1):
                total = sum(question_pass(t, j, grading, ranked) for t in picked)
                low, high = wilson(total, len(picked))
                suffix = "" if grading == "strict" else "_lenient"
                entry[f"pass@{j}{suffix}"] = total / len(picked)
                entry[f"pass@{j}{suffix}_ci"] = [low, high]
        table[level] = entry
    return {
        "levels": table,
        "tries": most,
        "questions": len(tries),
        "seconds": run.seconds,
        "seconds_per_question": run.seconds / len(tries),
        "mean_steps": statistics.mean(a.steps for a in run.attempts),
        "mean_unique_layers": statistics.mean(a.unique_layers for a in run.attempts),
    }


def solved_within(run, j: int) -> dict[str, bool]:
    """Per question: one of its first ``j`` tries is strictly correct (its actual tries)."""
    return {q: any(a.strict for a in t[:j]) for q, t in tries_by_question(run).items()}


def metrics(runs: dict[str, Any], k: int, ranked: set[str]) -> dict[str, Any]:
    """Every method's metrics on one task, time ratios to Base, and the paired tests."""
    result: dict[str, Any] = {
        name: method_metrics(run, k, name in ranked) for name, run in runs.items()
    }
    base_time = result["base"]["seconds_per_question"]
    for entry in result.values():
        entry["time_ratio_to_base"] = entry["seconds_per_question"] / base_time
    tests: dict[str, Any] = {}
    polar = "polar" if "polar" in runs else "polar_top1"
    tests["polar_pass@1_vs_base"] = mcnemar(
        solved_within(runs[polar], 1), solved_within(runs["base"], 1)
    )
    if polar == "polar":
        polar_k = solved_within(runs["polar"], k)
        for name, run in runs.items():
            if name not in ("polar", "polar_top1"):
                tests[f"polar_pass@{k}_vs_{name}"] = mcnemar(polar_k, solved_within(run, k))
    result["tests"] = tests
    return result


def cell(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        return "–"
    low, high = entry[f"{key}_ci"]
    return f"{percent(entry[key])} [{percent(low)}, {percent(high)}]"


def markdown(results: dict[str, Any]) -> str:
    """The report's tables: the task by level (pass@1, pass@k, lenient, steps, time) and OOD."""
    k = results["settings"]["k"]
    task = results["settings"]["task"]
    main = results["metrics"][task]
    methods = [m for m in LABELS if m in main]
    levels = list(main["base"]["levels"])
    lines = [
        f"### {task} ({results['settings']['split']}), strict grading, 95 % Wilson intervals",
        "",
    ]
    header = "| method | " + " | ".join(
        f"L{lv} pass@1" if lv != "all" else "all pass@1" for lv in levels
    )
    lines += [header + f" | all pass@{k} | all pass@1 lenient | steps | time/q (× base) |"]
    lines += ["|" + "---|" * (len(levels) + 5)]
    for name in methods:
        entry = main[name]
        all_ = entry["levels"]["all"]
        lines.append(
            f"| {LABELS[name]} | "
            + " | ".join(percent(entry["levels"][lv]["pass@1"]) for lv in levels)
            + f" | {cell(all_, f'pass@{k}')} | {percent(all_.get('pass@1_lenient'))} | "
            f"{entry['mean_steps']:.1f} | {entry['seconds_per_question']:.2f} s "
            f"({entry['time_ratio_to_base']:.2f}×) |"
        )
    lines += ["", f"pass@{k} by level:", ""]
    lines += [
        "| method | " + " | ".join(f"L{lv}" if lv != "all" else "all" for lv in levels) + " |"
    ]
    lines += ["|" + "---|" * (len(levels) + 1)]
    for name in methods:
        entry = main[name]["levels"]
        lines.append(
            f"| {LABELS[name]} | "
            + " | ".join(percent(entry[lv].get(f"pass@{k}", entry[lv]["pass@1"])) for lv in levels)
            + " |"
        )
    lines += ["", "Paired tests (exact McNemar, strict):", ""]
    lines += ["| comparison | only PoLar | only other | p |", "|---|---|---|---|"]
    for name, test in main["tests"].items():
        lines.append(f"| {name} | {test['only_a']} | {test['only_b']} | {test['p_value']:.3f} |")
    ood = {name: m for name, m in results["metrics"].items() if name != task}
    if ood:
        lines += ["", "### Out of distribution: pass@1, strict", ""]
        lines += ["| task | n | Base τ=0 | PoLar | only PoLar : only Base (p) | PoLar steps |"]
        lines += ["|---|---|---|---|---|---|"]
        for name, entry in ood.items():
            test = entry["tests"]["polar_pass@1_vs_base"]
            lines.append(
                f"| {name} | {entry['base']['questions']} | "
                f"{percent(entry['base']['levels']['all']['pass@1'])} | "
                f"{percent(entry['polar_top1']['levels']['all']['pass@1'])} | "
                f"{test['only_a']} : {test['only_b']} ({test['p_value']:.2f}) | "
                f"{entry['polar_top1']['mean_steps']:.1f} |"
            )
    latency = results["predictor_latency"]
    lines += [
        "",
        f"Predictor per request (batch 1, median): encoder {latency['encoder_ms']:.2f} ms, head "
        f"{latency['head_ms']:.2f} ms, beam {latency['beam_ms']:.2f} ms.",
    ]
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], folder: Path) -> None:
    """``results.md`` and the plots (pass@k curves per level; accuracy against steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (folder / "results.md").write_text(markdown(results))
    task = results["settings"]["task"]
    main = results["metrics"][task]
    k = results["settings"]["k"]
    levels = list(main["base"]["levels"])
    figure, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.2), squeeze=False)
    for axis, level in zip(axes[0], levels):
        for name in LABELS:
            if name not in main or name == "polar_top1":
                continue
            entry = main[name]["levels"][level]
            tries = [j for j in range(1, k + 1) if f"pass@{j}" in entry]
            axis.plot(tries, [100 * entry[f"pass@{j}"] for j in tries], "o-", label=LABELS[name])
        axis.set_title(f"L{level}" if level != "all" else "all levels")
        axis.set_xlabel("k")
        axis.set_ylabel("pass@k (%)")
    axes[0][0].legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(folder / "pass_at_k.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for name in LABELS:
        if name in main:
            entry = main[name]
            axis.scatter(
                entry["mean_steps"], 100 * entry["levels"]["all"]["pass@1"], label=LABELS[name]
            )
    axis.axvline(main["base"]["mean_steps"], color="grey", lw=0.5, ls="--")
    axis.set_xlabel("mean executed steps per try")
    axis.set_ylabel("pass@1, all levels (%)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "accuracy_vs_steps.png", dpi=110)
    plt.close(figure)
