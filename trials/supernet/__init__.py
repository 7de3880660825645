"""Weight-sharing search: one supernet trial instead of many stand-alone ones.

* ``networks``: mixed-op supernets of the NB201 and DARTS spaces (mixture and single-path
  forward passes, derivation, expected additive cost);
* ``architecture``: architecture parameters, GAEA's exponentiated-gradient update and DARTS's
  softmax/Adam baseline;
* ``landmarks``: landmark architectures and the pairwise ranking loss;
* ``cost``: the expected latency from an additive latency predictor, differentiable in the
  architecture weights;
* ``batchnorm``: the hook that prepares BatchNorm before a sub-network is scored;
* ``run``: ``SupernetRun`` (``TrialRun``'s interface) and the local backend's entry;
* ``settings``: the ``kind: supernet`` hyperparameters.

Run one with ``python -m hwnas.trials.supernet`` (see ``__main__``), through the local
backend's child or the Core API entrypoint (``hparams.kind: supernet``); ``docs/supernet.md``
describes the method and the benchmark.
"""
