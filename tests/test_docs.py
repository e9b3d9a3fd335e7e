"""Arguments are defined once, in the config classes: the README tables, the Python
signatures, their docstrings and --help must all agree with them."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import lightly_train
from lightly_train.docs import CONFIGS, args_table, cli_text, render_readme

README = Path(__file__).parents[1] / "README.md"
EXE = str(Path(sys.executable).with_name("lightly-train"))


def test_readme_tables_are_generated_from_the_configs() -> None:
    text = README.read_text(encoding="utf-8")
    for command, cls in CONFIGS.items():
        assert f"<!-- arguments: {command} -->\n{args_table(cls)}" in text, command
    assert render_readme(text) == text, "run: python -m lightly_train.docs README.md"


def test_render_replaces_a_stale_table() -> None:
    stale = "a\n<!-- arguments: export -->\n| old |\n<!-- /arguments -->\nb\n"
    rendered = render_readme(stale)
    assert "| old |" not in rendered and "| `part` | `model` |" in rendered
    assert rendered.startswith("a\n") and rendered.endswith("<!-- /arguments -->\nb\n")


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_signature_matches_the_config(command: str) -> None:
    cls: type[BaseModel] = CONFIGS[command]
    params = inspect.signature(getattr(lightly_train, command)).parameters
    assert list(params) == list(cls.model_fields)
    for name, field in cls.model_fields.items():
        default = params[name].default
        if field.is_required():
            assert default is inspect.Parameter.empty, name
        else:
            assert default == field.default, name


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_docstring_documents_every_argument(command: str) -> None:
    doc = inspect.getdoc(getattr(lightly_train, command)) or ""
    args = doc.split("Args:", 1)[1].split("\n\n", 1)[0]
    entries = re.findall(r"^    (\w+(?:, \w+)*):", args, flags=re.MULTILINE)
    names = [name for entry in entries for name in entry.split(", ")]
    assert names == list(CONFIGS[command].model_fields)


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_help_lists_every_argument_and_default(command: str) -> None:
    result = subprocess.run(
        [EXE, command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name, field in CONFIGS[command].model_fields.items():
        default = "required" if field.is_required() else f"default: {field.default!r}"
        assert f"  {name}  ({default})" in result.stdout


def test_cli_text() -> None:
    assert [cli_text(v) for v in (None, True, (224, 160), "auto", 3)] == [
        "null", "true", "[224,160]", "auto", "3",
    ]  # fmt: skip
