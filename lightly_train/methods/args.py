"""Typed argument models shared by the methods: strict keys, helpful errors."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from lightly_train.errors import LightlyTrainError

ArgsT = TypeVar("ArgsT", bound="StrictArgs")


class StrictArgs(BaseModel):
    """Base of all argument models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_args(
    args_cls: type[ArgsT], values: Mapping[str, Any] | ArgsT | None, what: str
) -> ArgsT:
    """Validates a user dict into ``args_cls``.

    Args:
        args_cls: The pydantic model to validate into.
        values: The user's dict (or an already validated instance); ``None`` means
            all defaults.
        what: How the user calls these arguments, e.g. ``"method_args"``; used in
            error messages.

    Raises:
        LightlyTrainError: On an unknown key (listing the valid keys) or an invalid
            value (naming the key and what was expected).

    Example:
        >>> from lightly_train.methods.simclr import SimCLRArgs
        >>> parse_args(SimCLRArgs, {"temperature": 0.2}, "method_args").temperature
        0.2
    """
    if isinstance(values, args_cls):
        return values
    values = dict(values or {})
    valid = sorted(args_cls.model_fields)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise LightlyTrainError(
            f"Unknown {what} key(s) {', '.join(repr(k) for k in unknown)}.{hint} "
            f"Valid {what} keys are: {', '.join(valid)}."
        )
    try:
        return args_cls.model_validate(values)
    except ValidationError as ex:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}"
            for err in ex.errors()
        )
        raise LightlyTrainError(f"Invalid {what}: {problems}.") from ex
