"""The ``stylegan-unmask`` command line.

Sub-commands live in their own modules and are imported only when invoked, so
``stylegan-unmask --help`` does not pay for importing torch, OpenCV or dlib.
"""
from __future__ import annotations

import importlib
import sys

import click

from ..errors import UnmaskError

# command name -> "module:attribute", in data-flow order.
COMMANDS = {
    "align": "stylegan_unmask.cli.face_commands:align_command",
    "mask": "stylegan_unmask.cli.face_commands:mask_command",
    "eval-masks": "stylegan_unmask.cli.face_commands:eval_masks_command",
    "project": "stylegan_unmask.cli.project_commands:project_command",
    "batch": "stylegan_unmask.cli.project_commands:batch_command",
    "generate": "stylegan_unmask.cli.generate_command:generate_command",
    "dataset": "stylegan_unmask.cli.train_commands:dataset_command",
    "train": "stylegan_unmask.cli.train_commands:train_command",
    "metrics": "stylegan_unmask.cli.train_commands:metrics_command",
    "export": "stylegan_unmask.cli.train_commands:export_command",
    "train-segmenter": "stylegan_unmask.cli.train_commands:train_segmenter_command",
    "synth-masks": "stylegan_unmask.cli.eval_commands:synth_masks_command",
    "eval-unmask": "stylegan_unmask.cli.eval_commands:eval_unmask_command",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stylegan-unmask")
def cli():
    """Show the face beneath a face mask with a pretrained FFHQ StyleGAN2.

    \b
    Typical use:
      stylegan-unmask project face.png --steps 1000
      stylegan-unmask batch photos/ --outdir results/
    """


def main(argv=None):
    """Console-script entry point: user errors print one line, exit code 1."""
    try:
        rv = cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except UnmaskError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
