"""Tables, plots and the JSON of the search-quality benchmark (see ``search_quality.py``).

Per setting (dataset/device for multi-objective and constrained runs, dataset for
single-objective runs) and method, each figure is a mean +- std over seeds of its value after
``B`` queries. "Overall" figures average a seed's values over the settings first, so the std is
across seeds. The "best peer" at a budget is the peer with the best mean there; ``x peer`` is a
method's mean divided by it, and ``n->peer`` the fewest queries after which the method's mean
curve reaches the best peer's mean at that budget (``-`` when it never does within the runs).

The headline table puts one hwnas strategy (``auto``) beside the best peer of every setting,
figure and budget, with mean +- standard error and the noise ceiling (``oracle``); a
difference within twice the combined standard error is a tie.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.search_quality_metrics import HIGHER_IS_BETTER, REFERENCE_POINT, queries_to_reach

FIGURE_TITLES = {
    "hv_ratio": "(a) hypervolume ratio to the true front (true mean validation accuracy)",
    "constrained_test": "(b) test accuracy % of the best-by-validation pick under the latency "
    "bound (device median)",
    "best_test": "(c) single-objective: test accuracy % of the best-by-validation pick",
    "regret": "(d) constrained: test-accuracy regret (pp) of the best-by-validation pick under "
    "the latency bound (25th percentile)",
}
DECIMALS = {"hv_ratio": 4, "constrained_test": 2, "best_test": 2, "regret": 2}
#: The strategy the headline table compares with the best peer.
HEADLINE = "auto"
#: A difference within this many combined standard errors is a tie.
TIE_SE = 2.0


def _matrix(curves: list[list[float | None]], n: int) -> np.ndarray:
    """Seeds x queries, a short run padded with its last value (NaN for missing)."""
    out = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        vals = np.array([np.nan if v is None else v for v in c], dtype=float)
        if len(vals):
            out[i, : len(vals)] = vals[:n]
            out[i, len(vals) :] = vals[-1]
    return out


def _stats(m: np.ndarray, budgets: list[int]) -> dict[str, Any]:
    """Mean/std curves and the per-budget figures of a seeds x queries matrix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a feasible pick
        mean = np.nanmean(m, axis=0)
        std = np.nanstd(m, axis=0)
    at = {}
    for b in budgets:
        col = m[:, b - 1]
        n = int(np.sum(np.isfinite(col)))
        at[str(b)] = {
            "mean": _num(mean[b - 1]),
            "std": _num(std[b - 1]),
            "se": _num(std[b - 1] / np.sqrt(n - 1)) if n > 1 else None,
            "values": [_num(v) for v in col],
        }
    return {"mean": [_num(v) for v in mean], "std": [_num(v) for v in std], "at": at}


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


def _compare(
    stats: dict[str, dict[str, Any]], peers: list[str], budgets: list[int], figure: str
) -> dict[str, dict[str, Any]]:
    """Per budget: best peer, and each method's ratio to it and queries to reach it."""
    up = HIGHER_IS_BETTER[figure]
    out: dict[str, dict[str, Any]] = {}
    for b in budgets:
        key = str(b)
        peer_means = {
            p: stats[p]["at"][key]["mean"]
            for p in peers
            if p in stats and stats[p]["at"][key]["mean"] is not None
        }
        if not peer_means:
            continue
        pick = max if up else min
        best = pick(peer_means, key=lambda p: peer_means[p])
        target = peer_means[best]
        sign = 1.0 if up else -1.0
        rows = {}
        for method, s in stats.items():
            mean = s["at"][key]["mean"]
            curve = sign * np.array([np.nan if v is None else v for v in s["mean"]])
            rows[method] = {
                "ratio": None if mean is None or target == 0 else round(mean / target, 6),
                "queries_to_reach": queries_to_reach(curve, sign * target - 1e-12),
            }
        out[key] = {"best_peer": best, "best_peer_mean": target, "methods": rows}
    return out


def summarise(results: list[dict[str, Any]], args: argparse.Namespace, elapsed: float) -> dict:
    """Aggregate run results into the summary (and print the tables)."""
    budgets = list(args.budgets)
    n = max(budgets)
    methods = [*args.strategies, *args.peers]
    by: dict[tuple[str, str, str, str], list[list[float | None]]] = defaultdict(list)
    # (mode, group, figure, method) -> seed -> one curve per setting in the group
    by_seed: dict[tuple[str, str, str, str], dict[int, list[list[float | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    sim: dict[str, list[float]] = defaultdict(list)
    dups: dict[str, list[int]] = defaultdict(list)
    lookups: dict[str, list[int]] = defaultdict(list)
    # (mode, setting, figure) -> seed -> the noise ceiling's curve (the same for every method)
    oracle_by: dict[tuple[str, str, str], dict[int, list[float | None]]] = defaultdict(dict)
    short_runs = []
    for r in results:
        spec = r["spec"]
        setting = spec["dataset"] if spec["mode"] == "so" else f"{spec['dataset']}/{spec['device']}"
        if r.get("latency_lookups") is not None:
            lookups[spec["method"]].append(r["latency_lookups"])
        for fig, curve in (r.get("oracle") or {}).items():
            oracle_by[(spec["mode"], setting, fig)][spec["seed"]] = curve
        wall[spec["method"]].append(r["wall_s"])
        cpu[spec["method"]].append(r.get("cpu_s", np.nan))
        sim[spec["method"]].append(r.get("sim_time_h", np.nan))
        dups[spec["method"]].append(r["duplicates"])
        if r["queries"] < n:
            short_runs.append({**spec, "queries": r["queries"], "stalled": r.get("stalled")})
        for fig, curve in r["curves"].items():
            by[(spec["mode"], setting, fig, spec["method"])].append(curve)
            # overall multi-objective and constrained figures average over every
            # dataset/device setting; single-objective ones stay per dataset
            group = spec["dataset"] if spec["mode"] == "so" else "all"
            by_seed[(spec["mode"], group, fig, spec["method"])][spec["seed"]].append(curve)

    settings: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (mode, setting, fig, method), cs in sorted(by.items()):
        stats = _stats(_matrix(cs, n), budgets)
        settings.setdefault(f"{mode}:{setting}", {}).setdefault(fig, {})[method] = stats

    comparisons = {
        key: {fig: _compare(stats, list(args.peers), budgets, fig) for fig, stats in figs.items()}
        for key, figs in settings.items()
    }
    # setting key -> figure -> stats of the noise ceiling
    oracle: dict[str, dict[str, Any]] = defaultdict(dict)
    for (mode, setting, fig), per_seed in sorted(oracle_by.items()):
        curves = [c for _, c in sorted(per_seed.items())]
        oracle[f"{mode}:{setting}"][fig] = _stats(_matrix(curves, n), budgets)

    overall: dict[str, dict[str, Any]] = {}
    for (mode, group, fig, method), per_seed in sorted(by_seed.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN before a feasible pick
            seed_curves = [np.nanmean(_matrix(cs, n), axis=0) for _, cs in sorted(per_seed.items())]
        stats = _stats(np.vstack(seed_curves), budgets)
        overall.setdefault(f"{mode}:{group}", {}).setdefault(fig, {})[method] = stats
    overall_cmp = {
        key: {fig: _compare(stats, list(args.peers), budgets, fig) for fig, stats in figs.items()}
        for key, figs in overall.items()
    }

    summary = {
        "meta": {
            "budgets": budgets,
            "seeds": list(range(args.seed0, args.seed0 + args.seeds)),
            "datasets": list(args.datasets),
            "devices": list(args.devices),
            "cifar100_devices": list(getattr(args, "cifar100_devices", []) or args.devices),
            "constrained_datasets": list(getattr(args, "constrained_datasets", [])),
            "constrained_devices": list(getattr(args, "constrained_devices", [])),
            "slow_peer_seeds": getattr(args, "slow_peer_seeds", None),
            "repeat_rule": getattr(args, "repeat_rule", "pay"),
            "strategies": list(args.strategies),
            "strategy_options": dict(getattr(args, "strategy_options", {}) or {}),
            "peers": list(args.peers),
            "jobs": args.jobs,
            "cpu_count": os.cpu_count(),
            "elapsed_s": round(elapsed, 1),
            "runs": len(results),
            "fidelity": "full (200 epochs); the NB201 table has no learning curves",
            "noise": "one training seed's validation accuracy per query, chosen by "
            "(run seed, row): identical for every method with the same seed",
            "hv_objectives": "(-true mean validation accuracy/100, latency_ms / max latency "
            "of the space), minimised",
            "hv_reference_point": REFERENCE_POINT.tolist(),
            "latency_bound": "mo: median latency_ms of the device over the space; con: its "
            "25th percentile",
            "duplicates": (
                "pay: a peer's repeated architecture costs a query and is answered with the "
                "earlier result"
                if getattr(args, "repeat_rule", "pay") == "pay"
                else "free: a repeated architecture string is answered from the earlier query "
                "at no cost; a run that proposes more repeats than its budget is ended "
                "(short_runs) and keeps its last figures for larger budgets"
            )
            + " (hwnas never repeats: its filter dedupes by canonical key)",
            "latency_lookups": "distinct architectures whose latency an hwnas run looked up in "
            "its cost source (the table, standing in for measuring on the device), apart from "
            "training queries",
            "oracle": "noise ceiling: trains the best cells by true mean validation accuracy "
            "(within the bound for constrained figures; the true front for hypervolume) and "
            "picks by the one noisy seed it sees",
        },
        "timing_s_per_run": {m: round(float(np.mean(w)), 3) for m, w in sorted(wall.items())},
        "cpu_s_per_run": {m: round(float(np.mean(c)), 3) for m, c in sorted(cpu.items())},
        "simulated_gpu_hours_per_run": {
            m: round(float(np.mean(h)), 1) for m, h in sorted(sim.items())
        },
        "duplicates_per_run": {m: round(float(np.mean(d)), 2) for m, d in sorted(dups.items())},
        "latency_lookups_per_run": {
            m: round(float(np.mean(v)), 1) for m, v in sorted(lookups.items())
        },
        "short_runs": short_runs,
        "oracle": dict(oracle),
        "settings": settings,
        "comparisons": comparisons,
        "overall": overall,
        "overall_comparisons": overall_cmp,
    }
    summary["goals"] = goals(summary)
    summary["headline"] = headline(summary, HEADLINE)
    print_tables(summary, methods)
    return summary


def _verdict(a: dict[str, Any], p: dict[str, Any], up: bool) -> str:
    """``ahead``, ``tied`` or ``behind`` for means ``a`` vs ``p`` (with standard errors)."""
    if a["mean"] is None or p["mean"] is None:
        return "n/a"
    diff = (a["mean"] - p["mean"]) * (1.0 if up else -1.0)
    se = float(np.hypot(a.get("se") or 0.0, p.get("se") or 0.0))
    if abs(diff) <= TIE_SE * se or diff == 0:
        return "tied"
    return "ahead" if diff > 0 else "behind"


def headline(summary: dict[str, Any], method: str) -> dict[str, Any]:
    """``method`` vs the best peer of every setting, figure and budget; counts of verdicts."""
    rows = []
    for key, figs in summary["settings"].items():
        for fig, stats in figs.items():
            if method not in stats:
                continue
            for b in summary["meta"]["budgets"]:
                cmp = summary["comparisons"][key][fig].get(str(b))
                if not cmp:
                    continue
                peer = cmp["best_peer"]
                a, p = stats[method]["at"][str(b)], stats[peer]["at"][str(b)]
                o = summary.get("oracle", {}).get(key, {}).get(fig, {}).get("at", {}).get(str(b))
                rows.append(
                    {
                        "setting": key,
                        "figure": fig,
                        "budget": b,
                        "method": {"mean": a["mean"], "se": a["se"], "n": len(a["values"])},
                        "best_peer": peer,
                        "peer": {"mean": p["mean"], "se": p["se"], "n": len(p["values"])},
                        "oracle": None if o is None else o["mean"],
                        "verdict": _verdict(a, p, HIGHER_IS_BETTER[fig]),
                    }
                )
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("ahead", "tied", "behind")}
    return {"method": method, "rows": rows, "counts": counts} if rows else {}


#: Issue 15's targets at 100 queries, for every hwnas strategy.
GOAL_BUDGET = 100
GOAL_HV_RATIO = 0.99  # on every device
GOAL_C10_TEST = 94.30
GOAL_C100_TEST = 73.45
GOAL_REGRET = 0.7  # constrained, raspi4
GOAL_REGRET_SETTING = "con:cifar10/raspi4"


def goals(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 15's targets per hwnas strategy at 100 queries (empty if the grid lacks them):
    CIFAR-10 test >= 94.30, CIFAR-100 test >= 73.45, hypervolume ratio >= 0.99 on every
    multi-objective setting, constrained regret <= 0.7 pp on raspi4."""
    b = str(GOAL_BUDGET)
    if GOAL_BUDGET not in summary["meta"]["budgets"]:
        return {}
    out: dict[str, Any] = {}

    def mean(key: str, fig: str, method: str) -> float | None:
        stats = summary["settings"].get(key, {}).get(fig, {}).get(method)
        return None if stats is None else stats["at"][b]["mean"]

    for method in summary["meta"]["strategies"]:
        row: dict[str, Any] = {}
        for key, fig, goal, up in (
            ("so:cifar10", "best_test", GOAL_C10_TEST, True),
            ("so:cifar100", "best_test", GOAL_C100_TEST, True),
            (GOAL_REGRET_SETTING, "regret", GOAL_REGRET, False),
        ):
            m = mean(key, fig, method)
            if m is not None:
                row[key] = {"mean": m, "goal": goal, "met": m >= goal if up else m <= goal}
        hv = {
            k: mean(k, "hv_ratio", method)
            for k, figs in summary["settings"].items()
            if "hv_ratio" in figs
        }
        hv = {k: v for k, v in hv.items() if v is not None}
        if hv:
            worst = min(hv, key=lambda k: hv[k])
            row["hv_ratio_min"] = {
                "mean": hv[worst],
                "setting": worst,
                "goal": GOAL_HV_RATIO,
                "met": hv[worst] >= GOAL_HV_RATIO,
            }
        out[method] = row
    return out


def _cell(stats: dict[str, Any], budget: int, decimals: int) -> str:
    at = stats["at"][str(budget)]
    if at["mean"] is None:
        return "-"
    return f"{at['mean']:.{decimals}f} ± {at['std'] or 0:.{decimals}f}"


def print_tables(summary: dict[str, Any], methods: list[str]) -> None:
    """Overall tables per figure (all budgets) and per-setting tables at the middle budget."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file: wide enough that the tables do not wrap
        console = Console(width=200)
    budgets = summary["meta"]["budgets"]
    peers = set(summary["meta"]["peers"])
    for key, figs in summary["overall"].items():
        agg = key.split(":", 1)[1]
        for fig, stats in figs.items():
            where = "mean over dataset/device settings" if agg == "all" else agg
            table = Table(title=f"{FIGURE_TITLES[fig]} — {where}")
            table.add_column("method")
            for b in budgets:
                table.add_column(f"@{b}", justify="right")
                table.add_column("x peer", justify="right")
                table.add_column("n->peer", justify="right")
            cmp = summary["overall_comparisons"][key][fig]
            for method in methods:
                if method not in stats:
                    continue
                row = [method + (" (peer)" if method in peers else "")]
                for b in budgets:
                    row.append(_cell(stats[method], b, DECIMALS[fig]))
                    c = cmp.get(str(b), {}).get("methods", {}).get(method, {})
                    ratio = c.get("ratio")
                    reach = c.get("queries_to_reach")
                    row.append("-" if ratio is None else f"{ratio:.4f}")
                    row.append("-" if reach is None else str(reach))
                table.add_row(*row)
            best = ", ".join(f"@{b}: {cmp[str(b)]['best_peer']}" for b in budgets if str(b) in cmp)
            table.caption = f"best peer {best}"
            console.print(table)
    mid = budgets[len(budgets) // 2]
    for fig in FIGURE_TITLES:
        keys = [k for k, figs in summary["settings"].items() if fig in figs]
        if not keys:
            continue
        table = Table(title=f"{FIGURE_TITLES[fig]} — per setting @{mid} queries (mean ± std)")
        table.add_column("method")
        for k in keys:
            table.add_column(k.split(":", 1)[1], justify="right")
        for method in methods:
            row = [method + (" (peer)" if method in peers else "")]
            for k in keys:
                stats = summary["settings"][k][fig].get(method)
                row.append("-" if stats is None else _cell(stats, mid, DECIMALS[fig]))
            table.add_row(*row)
        oracle = summary.get("oracle", {})
        if any(fig in oracle.get(k, {}) for k in keys):
            cells = [
                _cell(oracle[k][fig], mid, DECIMALS[fig]) if fig in oracle.get(k, {}) else "-"
                for k in keys
            ]
            table.add_row("noise ceiling (oracle)", *cells)
        console.print(table)
    if summary.get("goals"):
        table = Table(title=f"issue 15 targets @{GOAL_BUDGET} queries")
        for col in (
            "strategy",
            f"CIFAR-10 test >= {GOAL_C10_TEST}",
            f"CIFAR-100 test >= {GOAL_C100_TEST}",
            f"HV ratio >= {GOAL_HV_RATIO} (worst setting)",
            f"regret <= {GOAL_REGRET} pp (raspi4)",
        ):
            table.add_column(col, justify="right")

        def mark(g: dict[str, Any] | None, fmt: str) -> str:
            if not g or g.get("mean") is None:
                return "-"
            where = f" {g['setting'].split(':', 1)[1]}" if "setting" in g else ""
            return f"{g['mean']:{fmt}}{where} ({'yes' if g['met'] else 'no'})"

        for method, g in summary["goals"].items():
            table.add_row(
                method,
                mark(g.get("so:cifar10"), ".2f"),
                mark(g.get("so:cifar100"), ".2f"),
                mark(g.get("hv_ratio_min"), ".4f"),
                mark(g.get(GOAL_REGRET_SETTING), ".2f"),
            )
        console.print(table)
    print_headline(summary, console)
    short: dict[str, list[int]] = defaultdict(list)
    for run in summary["short_runs"]:
        short[run["method"]].append(run["queries"])
    for method, counts in short.items():
        console.print(
            f"{method}: {len(counts)} run(s) ended before the budget (only repeats proposed), "
            f"after {min(counts)}-{max(counts)} queries; later budgets keep their last figures"
        )
    console.print(f"runs: {summary['meta']['runs']} in {summary['meta']['elapsed_s']} s")
    console.print(f"wall seconds per run: {summary['timing_s_per_run']}")
    console.print(f"CPU seconds per run: {summary['cpu_s_per_run']}")
    console.print(f"repeats per run: {summary['duplicates_per_run']}")
    if summary.get("latency_lookups_per_run"):
        console.print(
            "latency look-ups per run (cost source, apart from training queries): "
            f"{summary['latency_lookups_per_run']}"
        )


def print_headline(summary: dict[str, Any], console: Any) -> None:
    """The headline table: ``auto`` vs the best peer, mean ± s.e., noise ceiling, verdict."""
    from rich.table import Table

    head = summary.get("headline")
    if not head:
        return
    method = head["method"]
    table = Table(title=f"{method} vs the best peer (mean ± standard error over seeds)")
    for col in ("setting", "figure", "budget", method, "best peer", "peer", "oracle", "verdict"):
        table.add_column(col, justify="left" if col in ("setting", "figure") else "right")
    for r in head["rows"]:
        d = DECIMALS[r["figure"]]

        def ms(x: dict[str, Any], d: int = d) -> str:
            if x["mean"] is None:
                return "-"
            return f"{x['mean']:.{d}f} ± {x['se'] or 0:.{d}f} (n={x['n']})"

        table.add_row(
            r["setting"],
            r["figure"],
            str(r["budget"]),
            ms(r["method"]),
            r["best_peer"],
            ms(r["peer"]),
            "-" if r["oracle"] is None else f"{r['oracle']:.{d}f}",
            r["verdict"],
        )
    c = head["counts"]
    table.caption = (
        f"{method} ahead {c['ahead']}, tied {c['tied']}, behind {c['behind']} of "
        f"{len(head['rows'])} (tied: within {TIE_SE:g} combined standard errors)"
    )
    console.print(table)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Mean curves over queries: one panel per setting and figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (key, fig, stats)
        for key, figs in summary["settings"].items()
        for fig, stats in figs.items()
    ]
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig_, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    peers = set(summary["meta"]["peers"])
    for ax, (key, fig, stats) in zip(axes.flat, panels, strict=False):
        for method, s in stats.items():
            y = np.array([np.nan if v is None else v for v in s["mean"]])
            x = np.arange(1, len(y) + 1)
            ax.plot(x, y, ls="--" if method in peers else "-", lw=1.2, label=method)
        ax.set_title(f"{key.split(':', 1)[1]}: {fig}", fontsize=9)
        ax.set_xlabel("queries", fontsize=8)
        ax.tick_params(labelsize=7)
        finite = [v for s in stats.values() for v in s["mean"][len(s["mean"]) // 4 :] if v]
        if finite:
            lo, hi = min(finite), max(finite)
            ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig_.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
    fig_.tight_layout(rect=(0, 0.06, 1, 1))
    fig_.savefig(path, dpi=110)
    plt.close(fig_)


def write_outputs(summary: dict[str, Any], out: Path) -> None:
    """``search_quality.json`` (atomically) and ``search_quality.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "search_quality.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    os.replace(tmp, out / "search_quality.json")
    plot(summary, out / "search_quality.png")
    print(f"wrote {out / 'search_quality.json'} and {out / 'search_quality.png'}")


__all__ = ["plot", "print_tables", "summarise", "write_outputs"]
