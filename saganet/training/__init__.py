"""Training: configuration, loss step, loop, checkpoints, optimiser/schedule and EMA.

``train.py`` composes the Hydra config, converts it with :func:`saganet.training.config.from_hydra`
and calls :func:`saganet.training.loop.fit`.
"""
