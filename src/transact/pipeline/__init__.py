"""One home for a run: its config and the train-and-evaluate pipeline.

This package sits above ``training/`` and ``evaluation/`` and composes them: a
:class:`~transact.pipeline.run_config.RunConfig` (one TOML file under ``configs/``) holds
the data, model, loss, trainer and evaluation settings of one model; ``run.py`` builds
the examples of a time window (``windows.py``), the model and its loss, and trains;
the evaluation stage scores the trained ``model.pt``. Neither ``training/`` nor
``evaluation/`` imports this package.
"""
