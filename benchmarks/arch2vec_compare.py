"""arch2vec vs regularized evolution and the predictor-guided strategy on the NB201 table.

A thin front end to ``benchmarks/search_quality.py`` (same runner, noise, figures and report):
it restricts the grid to the three strategies plus Optuna's random search as a floor, at
50/100/200 queries.

    .venv/bin/python -m benchmarks.arch2vec_compare --out runs/arch2vec_compare
    .venv/bin/python -m benchmarks.arch2vec_compare --seeds 3 --devices pixel2 --out runs/a2v

Any other ``search_quality`` option (``--datasets``, ``--jobs``, ``--table`` ...) passes
through.
"""

from __future__ import annotations

import sys

from benchmarks.search_quality import main as search_quality_main

DEFAULTS = {
    "--strategies": ["arch2vec", "evolution", "predictor"],
    "--peers": ["optuna-random"],
    "--budgets": ["50", "100", "200"],
    "--seeds": ["5"],
    "--datasets": ["cifar10"],
    "--devices": ["pixel2", "raspi4"],
}


def main(argv: list[str] | None = None) -> int:
    """Run ``search_quality`` with this comparison's defaults for options not given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for flag, values in DEFAULTS.items():
        if flag not in argv:
            argv += [flag, *values]
    return search_quality_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
