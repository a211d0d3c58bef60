"""``search_stats.md``: the tables a reader of ``search_stats.json`` wants, in markdown."""

from __future__ import annotations

from typing import Any

from polar.metrics import percent

SPACE_NAMES = {"skip_loop": "Skip&Loop", "skip": "Skip", "loop": "Loop"}


def oracle_markdown(stats: dict[str, Any], key: str) -> list[str]:
    table = stats[key]
    spaces = [s for s in SPACE_NAMES if s in stats["questions"]]
    lines = ["| level | n | Base | " + " | ".join(SPACE_NAMES[s] for s in spaces) + " |"]
    lines.append("|" + "---|" * (3 + len(spaces)))
    for level, entry in table.items():
        name = f"L{level}" if level != "all" else "all"
        lines.append(
            f"| {name} | {entry['n']} | {percent(entry['base'])} | "
            + " | ".join(percent(entry[s]) for s in spaces)
            + " |"
        )
    return lines


def controls_markdown(stats: dict[str, Any], grading: str = "strict") -> list[str]:
    lines = []
    for space, levels in stats["controls"][grading].items():
        lines += [
            "",
            f"{SPACE_NAMES[space]} ({grading}): oracle against as many tries without guidance",
            "",
            "| level | n | tries | oracle | base sampling (best T) | random programs | "
            "search gain | oracle vs sampling (only : only, p) | oracle vs random |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for level, e in levels.items():
            vs_s, vs_r = e["oracle_vs_sampling"], e["oracle_vs_random"]
            lines.append(
                f"| {f'L{level}' if level != 'all' else 'all'} | {e['n']} | "
                f"{e['mean_tries']:.1f} | {percent(e['oracle'])} | "
                f"{percent(e['sampling_best'])} (T = {e['best_temperature']:g}) | "
                f"{percent(e['random'])} | {100 * e['search_gain']:+.1f} | "
                f"{vs_s['only_a']} : {vs_s['only_b']}, {vs_s['p_value']:.3f} | "
                f"{vs_r['only_a']} : {vs_r['only_b']}, {vs_r['p_value']:.3f} |"
            )
    return lines


def curve_markdown(stats: dict[str, Any]) -> list[str]:
    lines = []
    for space, curve in stats["oracle_curve"].items():
        entry = curve["all"]
        lines += [
            "",
            f"{SPACE_NAMES[space]}, all levels: solved (%) by simulations "
            f"({entry['n']} questions{' with controls' if entry['sampling'] else ''})",
            "",
            "| simulations | " + " | ".join(str(s) for s in curve["simulations"]) + " |",
            "|---|" + "---|" * len(curve["simulations"]),
            "| mean tries | " + " | ".join(f"{t:.1f}" for t in entry["tries"]) + " |",
            "| oracle | " + " | ".join(percent(v) for v in entry["oracle"]) + " |",
        ]
        for name in ("sampling", "random"):
            if entry[name]:
                label = "base sampling" if name == "sampling" else "random programs"
                lines.append(f"| {label} | " + " | ".join(percent(v) for v in entry[name]) + " |")
    return lines


def markdown(stats: dict[str, Any]) -> str:
    """Oracle accuracy (strict, lenient), the controls, the oracle-vs-simulations curve."""
    lines = ["Oracle accuracy, strict grading (%):", "", *oracle_markdown(stats, "oracle_accuracy")]
    lines += ["", "Lenient grading (math-verify):", ""]
    lines += oracle_markdown(stats, "oracle_accuracy_lenient")
    if "controls" in stats:
        lines += controls_markdown(stats)
    lines += curve_markdown(stats)
    if "recheck" in stats:
        r = stats["recheck"]
        lines += [
            "",
            f"Recheck of {r['pairs']} stored pairs at {r['run']['commit'][:7]} (written at "
            f"{len(r['pairs_by_commit'])} code versions): same completion "
            f"{r['same_completion']}, same answer {r['same_answer']}, "
            f"same reward {r['same_reward']}.",
        ]
    return "\n".join(lines) + "\n"
