"""Errors that are the user's to fix.

The CLI prints these without a traceback and exits with status 2; the Python API raises
them. Every message names what was wrong and what would be valid.
"""

from __future__ import annotations


class LightlyTrainError(ValueError):
    """A user error: bad arguments, missing files, an output that already exists."""
