"""One default network: the registry's, in every signature and every command's --network default."""
from __future__ import annotations

import inspect

from stylegan_unmask import DEFAULT_NETWORK
from stylegan_unmask.checkpoints import load_generator
from stylegan_unmask.checkpoints.registry import REGISTRY, get_entry
from stylegan_unmask.cli import cli
from stylegan_unmask.evaluation.run import run_eval
from stylegan_unmask.pipeline import get_network, unmask
from stylegan_unmask.runs.batch import run_batch


def test_the_default_is_a_shipped_registry_network():
    assert DEFAULT_NETWORK in REGISTRY and get_entry(DEFAULT_NETWORK).bundled


def test_every_entry_point_defaults_to_it():
    for fn, name in ((load_generator, "spec"), (get_network, "spec"), (unmask, "network"), (run_batch, "network"),
                     (run_eval, "network")):
        assert inspect.signature(fn).parameters[name].default == DEFAULT_NETWORK, fn.__qualname__
    for command in ("project", "batch", "eval-unmask"):
        option = next(p for p in cli.get_command(None, command).params if p.name == "network")
        assert option.default == DEFAULT_NETWORK and option.show_default, command
