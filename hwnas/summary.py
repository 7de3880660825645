"""What a person reads at the end of a search: the winner and the front as a small table.

``front_table`` renders ranked front rows (``hwnas.report.front_rows``: rank, trial, arch,
feasible, metrics) with one column per objective; ``print_search_summary`` adds the counts,
why the search ended and where the report is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Front members shown; the rest are in pareto.json.
MAX_ROWS = 10


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return f"{value:.4g}"


def front_table(
    front: Sequence[Mapping[str, Any]],
    objectives: Sequence[Mapping[str, str]],
    *,
    title: str = "Pareto front",
    max_rows: int = MAX_ROWS,
) -> Any:
    """A ``rich.table.Table``: rank, trial, architecture and each objective (arrow: its goal);
    infeasible members (no trial met the constraints) are marked."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right")
    table.add_column("architecture", overflow="fold")
    for o in objectives:
        arrow = "↑" if o["goal"] == "maximize" else "↓"
        table.add_column(f"{o['metric']} {arrow}", justify="right")
    for row in front[:max_rows]:
        mark = "" if row.get("feasible", True) else " (infeasible)"
        table.add_row(
            f"{row['rank']}{mark}",
            str(row["trial_id"]),
            str(row["arch"]),
            *(_number(row["metrics"].get(o["metric"])) for o in objectives),
        )
    if len(front) > max_rows:
        table.caption = f"{len(front) - max_rows} more in pareto.json"
    return table


def print_search_summary(summary: Any, console: Any = None) -> None:
    """The end of ``hwnas search``: counts and outcome, the front table, the report's place."""
    from rich.console import Console

    console = console or Console()
    console.print(
        f"{summary.out_dir}: {summary.trials} trials ({summary.completed} evaluated, "
        f"{summary.failed} failed), {summary.events} events, {summary.elapsed_s:.0f} s; "
        f"{summary.reason}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.front:
        best = summary.front[0]
        console.print(
            f"winner: trial {best['trial_id']} {best['arch']}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(front_table(summary.front, summary.objectives))
    if summary.report_files:
        console.print(
            f"report: {summary.out_dir}/pareto.json, trials.csv, pareto.png, hypervolume.png; "
            f"export the winner with: hwnas export {summary.out_dir} --rank 1",
            highlight=False,
            soft_wrap=True,
        )


__all__ = ["MAX_ROWS", "front_table", "print_search_summary"]
