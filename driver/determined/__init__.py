"""hwnas as a Determined custom searcher (Determined 0.19.6 - 0.37.x; removed in 0.38).

``adapter`` (``HwnasSearchMethod``: ``determined.searcher.SearchMethod`` over hwnas's
``SearchMethod``), ``runner`` (``HwnasSearchRunner``: ``RemoteSearchRunner`` with JSON
checkpoints, the Pareto report and web-UI metrics), ``experiment_config`` (the trial
experiment the searcher creates), ``warm_start`` (earlier results for recurring sweeps),
``progress`` (report + metrics), ``__main__`` (the searcher task's entrypoint). Importing this
package needs ``determined`` (the ``hwnas[determined]`` extra); nothing else in hwnas does.
"""
