"""Typed configs shared by the CLI and the Python API.

Each command has one pydantic model. The CLI turns ``key=value`` arguments into the same
dict of keyword arguments the Python API receives, and both validate through
``validate_config`` so errors read the same everywhere.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, model_validator

from lightly_train.errors import LightlyTrainError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Config(BaseModel):
    """Base for command configs: unknown keys are errors, paths may be ``PathLike``."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _cli_text_for_strings(cls, data: Any) -> Any:
        # A directory named "2024.10" parses as a float; a string field wants the text.
        if not isinstance(data, dict):
            return data
        return {
            key: _number_text(value)
            if key in cls.model_fields
            and _only_strings(cls.model_fields[key].annotation)
            else value
            for key, value in data.items()
        }  # fmt: skip


class CliNumber:
    """Mixin for numbers parsed from the CLI that remember their text."""

    text: str


class CliInt(int, CliNumber):
    pass


class CliFloat(float, CliNumber):
    pass


def _number_text(value: Any) -> Any:
    """A CLI number as its text, also inside a list (data=[2024.10, dir])."""
    if isinstance(value, CliNumber):
        return value.text
    if isinstance(value, list):
        return [_number_text(v) for v in value]
    return value


def _only_strings(annotation: Any) -> bool:
    """Whether a field takes strings (or lists of them) but no numbers."""
    kinds = {a for a in get_args(annotation)} or {annotation}
    flat = {get_origin(k) or k for k in kinds}
    return str in flat and not flat & {int, float}


def check_module(value: Any) -> Any:
    """Validator for ``model`` fields: a registry name, or an ``nn.Module`` (Python API
    only). torch is imported only when a non-string arrives, so the CLI stays light."""
    if value is None or isinstance(value, str):
        return value
    from torch import nn

    if not isinstance(value, nn.Module):
        raise ValueError(
            f"expected a model name such as 'torchvision/resnet18' or a "
            f"torch.nn.Module, got {type(value).__name__}"
        )
    return value


def parse_value(text: str) -> Any:
    """Parses a CLI value as a literal, never evaluating it.

    JSON literals (``null``, ``true``, ``[224, 160]``) and Python literals (``None``,
    ``'a b'``, ``(1, 2)``) are understood. Inside lists, tuples and dicts, bare
    words are strings, as users type them: ``[dir_a, dir_b]``,
    ``{mean: [0.5, 0.5, 0.5]}``. Anything else is the string itself.

    Example:
        >>> parse_value("[dir_a, 'dir b', 3]")
        ['dir_a', 'dir b', 3]
    """
    value = _literal(text)
    if value is not _NOT_A_LITERAL:
        return value
    if text.strip()[:1] in _CLOSERS:
        try:
            value, end = _container(text, _skip_space(text, 0))
        except (ValueError, IndexError):
            return text  # unbalanced or malformed: the text is a name after all
        if _skip_space(text, end) == len(text):
            return value
    return text


_NOT_A_LITERAL = object()
_CLOSERS = {"[": "]", "(": ")", "{": "}"}


def _literal(text: str) -> Any:
    """A JSON or Python literal (numbers remember their text), or _NOT_A_LITERAL."""
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if type(value) in (int, float):
            number = CliInt(value) if type(value) is int else CliFloat(value)
            number.text = text.strip()
            return number
        return value
    return _NOT_A_LITERAL


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _container(text: str, i: int) -> tuple[Any, int]:
    """Parses the list, tuple or dict opening at ``text[i]``; returns it and the
    index after its closer. Raises ValueError when it is malformed."""
    closer, is_dict = _CLOSERS[text[i]], text[i] == "{"
    items: list[Any] = []
    i = _skip_space(text, i + 1)
    while text[i] != closer:
        if is_dict:
            key, i = _element(text, i, ":")
            if text[i] != ":":
                raise ValueError(f"expected ':' at {i}")
            value, i = _element(text, i + 1, "," + closer)
            items.append((key, value))
        else:
            value, i = _element(text, i, "," + closer)
            items.append(value)
        if text[i] == ",":
            i = _skip_space(text, i + 1)
        elif text[i] != closer:
            raise ValueError(f"expected ',' or {closer!r} at {i}")
    if is_dict:
        return dict(items), i + 1
    return (tuple(items) if closer == ")" else items), i + 1


def _element(text: str, i: int, stops: str) -> tuple[Any, int]:
    """Parses one element: a container, a quoted string, or a bare scalar that
    ends before the next of ``stops``; returns it and the index after it."""
    i = _skip_space(text, i)
    if text[i] in _CLOSERS:
        value, i = _container(text, i)
        return value, _skip_space(text, i)
    if text[i] in "'\"":
        end = i + 1
        while text[end] != text[i]:
            end += 2 if text[end] == "\\" else 1
        return ast.literal_eval(text[i : end + 1]), _skip_space(text, end + 1)
    end = i
    while text[end] not in stops:
        if text[end] in "[](){}":
            raise ValueError(f"unexpected {text[end]!r} at {end}")
        end += 1
    token = text[i:end].strip()
    if not token:
        raise ValueError(f"empty element at {i}")
    value = _literal(token)
    return (token if value is _NOT_A_LITERAL else value), end


def parse_cli_args(args: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turns ``["a=1", "b.c=x"]`` into ``{"a": 1, "b": {"c": "x"}}``."""
    result: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise LightlyTrainError(
                f"Argument '{arg}' is not of the form key=value, e.g. out=emb.pth."
            )
        *parents, leaf = key.split(".")
        if "" in (*parents, leaf):
            raise LightlyTrainError(
                f"Argument '{arg}' has an empty part in its key; use dots only "
                "between names, e.g. transform_args.image_size=[32,32]."
            )
        node = result
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                dotted = ".".join(parents[: i + 1])
                raise LightlyTrainError(f"'{dotted}' is given as a value and a dict.")
        if leaf in node:
            raise LightlyTrainError(f"Argument '{key}' is given more than once.")
        node[leaf] = parse_value(value)
    return result


def _fspath(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_fspath(v) for v in value]
    return value


def validate_config(cls: type[ConfigT], kwargs: dict[str, Any]) -> ConfigT:
    """Builds ``cls`` from ``kwargs``, turning validation errors into plain messages."""
    kwargs = {k: _fspath(v) for k, v in kwargs.items()}
    try:
        return cls(**kwargs)
    except pydantic.ValidationError as ex:
        raise LightlyTrainError(_describe(cls, ex)) from None


def _describe(cls: type[BaseModel], ex: pydantic.ValidationError) -> str:
    valid = list(cls.model_fields)
    lines: dict[str, str] = {}  # one line per argument, even for union types
    for err in ex.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        if key in lines:
            continue
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            lines[key] = (
                f"Unknown argument '{key}'.{hint} Valid arguments are: "
                f"{', '.join(valid)}."
            )
        elif err["type"] == "missing":
            lines[key] = f"Missing required argument '{key}'."
        else:
            field = cls.model_fields[key]
            expected = (
                Annotated[field.annotation, *field.metadata]
                if field.metadata
                else field.annotation
            )
            why = (
                err["msg"].removeprefix("Value error, ")
                if err["type"] == "value_error"
                else f"expected {type_name(expected)}"
            )
            given = err["input"] if len(err["loc"]) == 1 else field_input(ex, key)
            lines[key] = f"Invalid value {given!r} for '{key}': {why}."
    return "\n".join(lines.values())


def field_input(ex: pydantic.ValidationError, key: str) -> Any:
    # The whole value the user gave for ``key``, not the nested item that failed.
    return next(e["input"] for e in ex.errors() if e["loc"][:1] == (key,))


def type_name(annotation: Any) -> str:
    """A readable name for a config annotation: ``int > 0 or 'auto'``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        bounds = [f" > {m.gt}" for m in args[1:] if getattr(m, "gt", None) is not None]
        return type_name(args[0]) + "".join(bounds)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"[{inner}]" if origin is tuple else f"list of {inner}"
    return getattr(annotation, "__name__", str(annotation))


def help_text(cls: type[BaseModel]) -> str:
    """Lists every argument of a config with its default and meaning (for --help)."""
    lines = []
    for name, field in cls.model_fields.items():
        default = "required" if field.is_required() else f"default: {field.default!r}"
        lines.append(f"  {name}  ({default})")
        lines.append(f"      {field.description or ''}")
    return "\n".join(lines)
