"""Network files -> a ready StyleGAN2 generator; nothing in a file is ever executed.

=================  ============================================================
``registry``       the networks known by name (``DEFAULT_NETWORK``, NVIDIA's FFHQ)
``download``       cache, resumable download, sha256, atomic
``load``           :func:`load_generator`: name/URL/file -> spec -> generator
``spec``           :class:`NetworkSpec`, what every reader hands the builder
``safe_pickle``    the one restricted unpickler (NVIDIA pickles, numpy arrays)
``nvidia_pickle``  NVIDIA's network pickles -> spec
``torch_file``     any ``torch.save`` file, safely
``rosinality``     rosinality ``.pt`` -> spec in NVIDIA's names
``ours``           our own network format: record, save, load, export, read
=================  ============================================================

Training writes networks through :mod:`.ours`; nothing here imports training.
"""
from .. import DEFAULT_NETWORK
from .load import build_generator, load_generator, read_checkpoint, resolve_checkpoint, sniff_format
from .registry import REGISTRY
from .spec import FORMAT_NVIDIA_PICKLE, FORMAT_OURS, FORMAT_ROSINALITY, NetworkSpec

__all__ = [
    "DEFAULT_NETWORK",
    "FORMAT_NVIDIA_PICKLE",
    "FORMAT_OURS",
    "FORMAT_ROSINALITY",
    "REGISTRY",
    "NetworkSpec",
    "build_generator",
    "load_generator",
    "read_checkpoint",
    "resolve_checkpoint",
    "sniff_format",
]
