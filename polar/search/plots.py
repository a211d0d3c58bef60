"""Figures of ``search_stats.json`` (matplotlib, written as PNG files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPACE_LABELS = {"skip": "Skip", "loop": "Loop", "skip_loop": "Skip&Loop"}


def write_plots(stats: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per figure in ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "oracle_accuracy.png": plot_oracle,
        "shorter_and_corrected.png": plot_corrected,
        "existence_by_budget.png": plot_budget,
        "segments.png": plot_segments,
        "luck_control.png": plot_luck,
        "oracle_curve.png": plot_curve,
    }
    if "controls" in stats:
        figures["controls.png"] = plot_controls
    paths = []
    for name, draw in figures.items():
        paths.append(folder / name)
        draw(stats, paths[-1])
    return paths


def save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_oracle(stats: dict[str, Any], path: Path) -> None:
    """Table 1 analog: Base and oracle accuracy per space, per level."""
    import matplotlib.pyplot as plt

    table = stats["oracle_accuracy"]
    levels = list(table)
    series = ["base", *[s for s in SPACE_LABELS if s in stats["questions"]]]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        values = [100 * (table[lv][name] or 0) for lv in levels]
        axis.bar(
            [x + i * width for x in range(len(levels))],
            values,
            width,
            label=SPACE_LABELS.get(name, "Base"),
        )
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(levels))])
    axis.set_xticklabels([f"L{lv}" if lv != "all" else "all" for lv in levels])
    axis.set_ylabel("accuracy (%)")
    axis.set_title("Base greedy vs oracle (some searched program correct)")
    axis.legend(fontsize=8)
    save(figure, path)


def plot_corrected(stats: dict[str, Any], path: Path) -> None:
    """Finding 2: steps of the shortest valid program of corrected questions, minus D."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for space, entry in stats["shorter_and_corrected"].items():
        deltas = entry["corrected_steps_minus_depth"]
        axis.plot(
            [int(d) for d in deltas],
            list(deltas.values()),
            "o-",
            label=f"{SPACE_LABELS[space]}: {entry['corrected']}/{entry['base_wrong']} "
            f"corrected; {entry['with_shorter_valid']}/{entry['base_correct']} "
            "right ones shorter",
        )
    axis.axvline(0, color="grey", lw=0.5)
    axis.set_xlabel("shortest valid program steps − D (base-wrong, corrected)")
    axis.set_ylabel("questions")
    axis.legend(fontsize=7)
    save(figure, path)


def plot_budget(stats: dict[str, Any], path: Path) -> None:
    """Finding 3: share of questions with a valid program within a step budget."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for space, curve in stats["existence_by_budget"].items():
        axis.plot(
            [int(b) for b in curve],
            [100 * (v or 0) for v in curve.values()],
            label=SPACE_LABELS[space],
        )
    axis.axvline(stats["depth"], color="grey", lw=0.5, ls="--")
    axis.set_xlabel("step budget (max program steps)")
    axis.set_ylabel("questions with a valid program (%)")
    axis.legend(fontsize=8)
    save(figure, path)


def plot_segments(stats: dict[str, Any], path: Path) -> None:
    """Finding 4: segment lengths per op and per-layer run counts of valid programs."""
    import matplotlib.pyplot as plt

    segments = stats["segments"].get("skip_loop") or next(iter(stats["segments"].values()))
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    ops = [op for op, counts in segments["segment_length"].items() if counts]
    width = 0.8 / max(len(ops), 1)
    for i, op in enumerate(ops):
        counts = segments["segment_length"][op]
        left.bar([int(k) + i * width for k in counts], list(counts.values()), width, label=op)
    left.set_xlabel("segment length (layers)")
    left.set_ylabel("segments")
    if ops:
        left.legend(fontsize=8)
    runs = segments["layer_runs_per_repeated_layer"]
    right.bar([int(k) for k in runs], list(runs.values()))
    right.set_xticks([int(k) for k in runs])
    right.set_xlabel("runs of a repeated layer")
    right.set_ylabel("layers (over valid programs)")
    save(figure, path)


def plot_luck(stats: dict[str, Any], path: Path) -> None:
    """Luck control: gold reached vs expected decoy rates, base-wrong questions."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    spaces = list(stats["luck_control"])
    names = ["gold_rate", "near_decoy_rate", "uniform_decoy_rate"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [100 * (stats["luck_control"][s][name] or 0) for s in spaces]
        axis.bar(
            [x + i * width for x in range(len(spaces))], values, width, label=name.replace("_", " ")
        )
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(spaces))])
    axis.set_xticklabels([SPACE_LABELS[s] for s in spaces])
    axis.set_ylabel("base-wrong questions (%)")
    axis.legend(fontsize=8)
    save(figure, path)


def plot_curve(stats: dict[str, Any], path: Path) -> None:
    """Oracle against the same-budget controls as simulations grow, all levels, per space."""
    import matplotlib.pyplot as plt

    curves = stats["oracle_curve"]
    figure, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.4), squeeze=False)
    for axis, (space, curve) in zip(axes[0], curves.items()):
        budgets, entry = curve["simulations"], curve["all"]
        axis.plot(budgets, [100 * (v or 0) for v in entry["oracle"]], "o-", label="oracle")
        for name in ("sampling", "random"):
            if entry[name]:
                label = "base sampling (best T)" if name == "sampling" else "random programs"
                axis.plot(budgets, [100 * (v or 0) for v in entry[name]], "s--", label=label)
        axis.set_xscale("log")
        axis.set_xlabel("simulations (controls: as many tries)")
        axis.set_title(SPACE_LABELS[space])
        axis.set_ylabel("questions solved (%)")
        axis.legend(fontsize=7)
    save(figure, path)


def plot_controls(stats: dict[str, Any], path: Path) -> None:
    """Oracle, best base sampling and random programs per level at the search's budget."""
    import matplotlib.pyplot as plt

    table = stats["controls"]["strict"]
    figure, axes = plt.subplots(1, len(table), figsize=(4 * len(table), 3.4), squeeze=False)
    names = {"oracle": "oracle", "sampling_best": "base sampling (best T)", "random": "random"}
    for axis, (space, levels) in zip(axes[0], table.items()):
        width = 0.8 / len(names)
        keys = list(levels)
        for i, (name, label) in enumerate(names.items()):
            values = [100 * (levels[lv][name] or 0) for lv in keys]
            axis.bar([x + i * width for x in range(len(keys))], values, width, label=label)
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))])
        axis.set_xticklabels([f"L{lv}" if lv != "all" else "all" for lv in keys])
        axis.set_title(f"{SPACE_LABELS[space]}: same number of tries")
        axis.set_ylabel("questions solved (%)")
        axis.legend(fontsize=7)
    save(figure, path)
