"""The ``lightly_train`` logger prints to stderr unless the user configured it."""

from __future__ import annotations

import logging


def setup_logging() -> None:
    logger = logging.getLogger("lightly_train")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%H:%M:%S")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
