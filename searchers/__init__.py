"""What to try next and when to stop: the engine-neutral search and the runners that drive it.

``config`` (validated YAML), ``objectives`` / ``metrics`` (what is optimised and bounded),
``pareto`` (fronts, crowding, hypervolume), ``asha`` (when to stop), ``strategies`` (what to
try next), ``filters`` (dedupe and constraint pre-filter), ``method`` (``SearchMethod``:
Determined's event shape, JSON state), ``operations`` (what the method asks runners to do).
"""
