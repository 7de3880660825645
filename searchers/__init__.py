"""What to try next and when to stop: the engine-neutral search method and its parts.

``config`` (validated YAML), ``objectives`` / ``metrics`` (what is optimised and bounded),
``pareto`` (fronts, crowding, hypervolume maths), ``front`` (the search's Pareto archive),
``records`` (one trial record), ``early_stopping`` / ``asha`` (when to stop), ``strategies``
(what to try next), ``acquisition`` (the candidate pool and pick the model-based strategies
share), ``surrogates`` (their models), ``filters`` (dedupe and constraint pre-filter), ``method``
(``SearchMethod``: Determined's event shape, JSON state), ``operations`` (what the method asks
a driver to do). Drivers live in ``hwnas.driver``.
"""
