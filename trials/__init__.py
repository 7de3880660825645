"""Train ONE architecture: data, the resumable training loop, checkpoints, and the two ways a
trial is run: ``python -m trials.local`` (local runner's child) and ``python3 -m trials.train``
(Determined Core API entrypoint).

Public API: ``trials.loop.train_to(hparams, target_epochs, checkpoint_dir, *, report=None)``,
``trials.loop.TrialRun``, ``trials.hparams.parse_hparams``, ``trials.data.load_data`` and the
outcome errors in ``trials.errors``.
"""
