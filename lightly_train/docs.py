"""The README's argument tables, generated from the config classes.

Each command's arguments are defined once, in its config class (name, type,
default, help text). ``--help`` renders them with ``config.help_text``; the README
tables are rendered here, between ``<!-- arguments: <command> -->`` and
``<!-- /arguments -->`` markers. After changing a config, regenerate them with::

    python -m lightly_train.docs README.md

``tests/test_docs.py`` fails when the README, a function's signature or its
docstring drifts from the config.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lightly_train.embedding.config import EmbedConfig
from lightly_train.export_config import ExportConfig
from lightly_train.training.config import TrainConfig

CONFIGS: dict[str, type[BaseModel]] = {
    "train": TrainConfig,
    "embed": EmbedConfig,
    "export": ExportConfig,
}
_BLOCK = re.compile(
    r"(<!-- arguments: (\w+) -->\n)(.*?)(<!-- /arguments -->)", re.DOTALL
)


def cli_text(value: Any) -> str:
    """A default as a user types it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(cli_text(v) for v in value) + "]"
    return str(value)


def args_table(cls: type[BaseModel]) -> str:
    """A markdown table of a config's arguments: name, default, meaning."""
    rows = ["| argument | default | meaning |", "| --- | --- | --- |"]
    for name, field in cls.model_fields.items():
        default = "required" if field.is_required() else f"`{cli_text(field.default)}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def render_readme(text: str) -> str:
    """``text`` with every arguments block replaced by its generated table."""

    def table(match: re.Match[str]) -> str:
        command = match.group(2)
        if command not in CONFIGS:
            raise ValueError(f"Unknown command {command!r} in an arguments marker.")
        return match.group(1) + args_table(CONFIGS[command]) + match.group(4)

    return _BLOCK.sub(table, text)


def main(argv: list[str]) -> None:
    for name in argv or ["README.md"]:
        path = Path(name)
        path.write_text(render_readme(path.read_text(encoding="utf-8")), "utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
