"""The ``lightly-train`` command line: ``lightly-train <command> key=value ...``.

Arguments are parsed into the same typed config the Python API validates, so the CLI
and ``lightly_train.<command>(...)`` accept exactly the same arguments.
"""

from __future__ import annotations

import sys

import click

from lightly_train._logging import configure_cli_logging
from lightly_train._openmp import wait_passively
from lightly_train.config import help_text, parse_cli_args, validate_config
from lightly_train.embedding.config import EmbedConfig
from lightly_train.errors import LightlyTrainError
from lightly_train.export_config import ExportConfig
from lightly_train.training.config import TrainConfig

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CONTEXT)
def cli() -> None:
    """Self-supervised pretraining and image embedding on Ray.

    Arguments are key=value pairs, e.g. out=emb.pth image_size=[224,160]
    transform_args.image_size=[32,32]. Values are parsed as literals (ints, floats,
    true/false, null, lists, dicts, quoted strings), never evaluated; bare words are
    strings, also in lists and dicts: data=[dir_a,dir_b].
    """


def _train(args: tuple[str, ...]) -> None:
    """Pretrain a model with self-supervised learning on the images under data.

    \b
    Example:
      lightly-train train out=out/my_experiment data=my_data_dir \\
          model=torchvision/resnet50 method=simclr epochs=100
    """
    from lightly_train.training import train

    train.run(validate_config(TrainConfig, parse_cli_args(args)))


for _name in ("train", "pretrain"):  # pretrain: an alias, as in LightlyTrain
    cli.command(
        _name,
        context_settings={**_CONTEXT, "ignore_unknown_options": True},
        epilog="\b\nArguments:\n" + help_text(TrainConfig),
        short_help="Pretrain a model with self-supervised learning."
        + (" Alias of train." if _name == "pretrain" else ""),
    )(click.argument("args", nargs=-1, type=click.UNPROCESSED)(_train))


@cli.command(
    context_settings={**_CONTEXT, "ignore_unknown_options": True},
    epilog="\b\nArguments:\n" + help_text(EmbedConfig),
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def embed(args: tuple[str, ...]) -> None:
    """Embed every image under data with a checkpoint.

    \b
    Example:
      lightly-train embed out=embeddings.pth data=my_data_dir \\
          checkpoint=out/my_experiment/checkpoints/last.ckpt format=torch
    """
    from lightly_train.embedding import pipeline

    pipeline.run(validate_config(EmbedConfig, parse_cli_args(args)))


@cli.command(
    context_settings={**_CONTEXT, "ignore_unknown_options": True},
    epilog="\b\nArguments:\n" + help_text(ExportConfig),
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def export(args: tuple[str, ...]) -> None:
    """Export the trained model of a checkpoint to a plain PyTorch file.

    part=model is the backbone as the plain torchvision model (its classifier head
    is untrained); part=embedding_model is the model embed uses.

    \b
    Example:
      lightly-train export out=model.pt \\
          checkpoint=out/my_experiment/checkpoints/last.ckpt \\
          part=model format=torch_state_dict
    """
    from lightly_train.exporting import run

    run(validate_config(ExportConfig, parse_cli_args(args)))


def main() -> None:
    """Entry point: user errors print one clear message and exit with status 2."""
    wait_passively()  # before any command imports torch
    configure_cli_logging()
    try:
        cli.main(standalone_mode=False)
    except LightlyTrainError as ex:
        click.echo(f"Error: {ex}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as ex:
        ex.show()
        sys.exit(ex.exit_code)
    except click.exceptions.Exit as ex:
        sys.exit(ex.exit_code)


if __name__ == "__main__":
    main()
