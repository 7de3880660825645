"""Train ONE architecture: data, the resumable training loop, checkpoints, and the two ways a
trial is run: ``python -m hwnas.trials.local`` (local backend's child) and
``python3 -m hwnas.trials.train`` (Determined Core API entrypoint).

Public API: ``loop.train_to(hparams, target_epochs, checkpoint_dir, *, report=None)``,
``loop.TrialRun``, ``hparams.parse_hparams``, ``data.load_data`` and the outcome errors in
``errors``.
"""
