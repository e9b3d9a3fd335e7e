"""The ``train`` command: an SSL method in Lightning, run by Ray Train.

``config`` (arguments), ``data`` (dataset and loader), ``callbacks`` (checkpoint
entry, metrics), ``worker`` (what each Ray Train worker runs) and ``train`` (the
driver: checks, output directory, the TorchTrainer).
"""
