"""The networks stylegan-unmask knows by name: the shipped ``faces-128`` and ``faces-64``, and NVIDIA's FFHQ StyleGAN2
checkpoints.

URLs are NVIDIA's own download locations, copied from NVIDIA's repositories
(see ``url_source``). NVIDIA publishes no checksums for these files, so
``sha256`` is ``None`` for all of them: the downloader then computes the hash,
prints it and says the file is unverified (see :mod:`.download`). Where a
public mirror of the *same file name* lists a SHA-256 (Hugging Face Git LFS
metadata), it is kept in ``reference_sha256`` with its source; a download is
compared against it and the result is reported, but a mismatch is a warning,
not an error, because the mirror is not NVIDIA. All files are read by the
restricted unpickler, so an unverified file can at worst hold wrong weights,
never run code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from .. import DEFAULT_NETWORK  # the default works offline with zero downloads: the shipped faces-128

__all__ = ["CheckpointEntry", "REGISTRY", "DEFAULT_NETWORK", "get_entry", "find_entry_by_url", "names"]

NVIDIA_LICENCE = (
    "NVIDIA Source Code License-NC: non-commercial research and evaluation use only "
    "(see LICENSE.txt in NVlabs/stylegan3 or NVlabs/stylegan2-ada-pytorch); trained on FFHQ "
    "(images under CC BY-NC-SA 4.0 and other non-commercial terms)"
)

_NGC_STYLEGAN2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_ADA_PRETRAINED = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_SG3_README = "NVlabs/stylegan3 README.md, 'StyleGAN2 pre-trained models' (NGC file list)"
_ADA_README = "NVlabs/stylegan2-ada-pytorch README.md, 'Data repository' table and projector example"
_ADA_TRAIN = "NVlabs/stylegan2-ada-pytorch train.py, resume_specs (transfer-learning source networks)"


@dataclass(frozen=True)
class CheckpointEntry:
    """One named checkpoint: where to get it and what it is."""

    name: str
    url: str
    filename: str
    resolution: int
    description: str
    url_source: str
    sha256: Optional[str] = None
    reference_sha256: Optional[str] = None
    reference_source: Optional[str] = None
    approx_size_mb: Optional[int] = None
    licence: str = NVIDIA_LICENCE
    local_names: Tuple[str, ...] = field(default_factory=tuple)
    #: Shipped inside the package (``stylegan_unmask/models/<filename>``): no download, works offline.
    bundled: bool = False

    @property
    def verified(self) -> bool:
        return self.sha256 is not None

    def candidate_filenames(self) -> Tuple[str, ...]:
        """Names under which a manually downloaded copy is accepted in a search folder."""
        return (self.filename,) + tuple(n for n in self.local_names if n != self.filename)


UTKFACE_LICENCE = (
    "weights: MIT like this code; trained on UTKFace, whose images are for non-commercial research use only "
    "(copyright of the images belongs to their owners), so the model inherits that restriction"
)

REGISTRY: Dict[str, CheckpointEntry] = {
    e.name: e
    for e in [
        CheckpointEntry(
            name="faces-128",
            url="",
            filename="faces-128.pt",
            resolution=128,
            description="our own 128x128 face StyleGAN2 with a projected EfficientNet-lite0 discriminator, trained "
                        "on CPU with `stylegan-unmask train` on 22,605 UTKFace faces (crop scale 0.8); the default; "
                        "shipped in the package, no download; recommends the projection's latent prior",
            url_source="this package (stylegan_unmask/models/)",
            licence=UTKFACE_LICENCE,
            bundled=True,
        ),
        CheckpointEntry(
            name="faces-64",
            url="",
            filename="faces-64.pt",
            resolution=64,
            description="our own 64x64 face StyleGAN2, trained on CPU with `stylegan-unmask train` on 22,605 "
                        "UTKFace faces (crop scale 0.8); shipped in the package, no download",
            url_source="this package (stylegan_unmask/models/)",
            licence=UTKFACE_LICENCE,
            bundled=True,
        ),
        CheckpointEntry(
            name="ffhq-1024",
            url=_NGC_STYLEGAN2 + "stylegan2-ffhq-1024x1024.pkl",
            filename="stylegan2-ffhq-1024x1024.pkl",
            resolution=1024,
            description="StyleGAN2 config F, FFHQ 1024x1024, PyTorch format (stylegan3 release on NVIDIA NGC)",
            url_source=_SG3_README,
        ),
        CheckpointEntry(
            name="ffhq-512",
            url=_NGC_STYLEGAN2 + "stylegan2-ffhq-512x512.pkl",
            filename="stylegan2-ffhq-512x512.pkl",
            resolution=512,
            description="StyleGAN2, FFHQ 512x512, PyTorch format (stylegan3 release on NVIDIA NGC)",
            url_source=_SG3_README,
            reference_sha256="d2b1c92f41ce8a64c55f7a75ef06c4c0eef9e17b1eb29aae8c10fb37b3e60478",
            reference_source="Hugging Face mirror DragGan/DragGan-Models, stylegan2-ffhq-512x512.pkl (Git LFS, 364 MB)",
            approx_size_mb=364,
        ),
        CheckpointEntry(
            name="ffhq-256",
            url=_NGC_STYLEGAN2 + "stylegan2-ffhq-256x256.pkl",
            filename="stylegan2-ffhq-256x256.pkl",
            resolution=256,
            description="StyleGAN2, FFHQ 256x256, PyTorch format (stylegan3 release on NVIDIA NGC)",
            url_source=_SG3_README,
        ),
        CheckpointEntry(
            name="ffhq-1024-ada",
            url=_ADA_PRETRAINED + "ffhq.pkl",
            filename="stylegan2-ada-pytorch-ffhq.pkl",
            resolution=1024,
            description="FFHQ 1024x1024 trained with original StyleGAN2, stylegan2-ada-pytorch release (ffhq.pkl)",
            url_source=_ADA_README,
            local_names=("ffhq.pkl",),
        ),
        CheckpointEntry(
            name="ffhq-256-paper256",
            url=_ADA_PRETRAINED + "transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl",
            filename="ffhq-res256-mirror-paper256-noaug.pkl",
            resolution=256,
            description="FFHQ 256x256, paper256 config (half width), transfer-learning source net of stylegan2-ada-pytorch",
            url_source=_ADA_TRAIN,
        ),
        CheckpointEntry(
            name="ffhq-512-transfer",
            url=_ADA_PRETRAINED + "transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl",
            filename="ffhq-res512-mirror-stylegan2-noaug.pkl",
            resolution=512,
            description="FFHQ 512x512, stylegan2 config, transfer-learning source net of stylegan2-ada-pytorch",
            url_source=_ADA_TRAIN,
        ),
        CheckpointEntry(
            name="ffhq-1024-transfer",
            url=_ADA_PRETRAINED + "transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl",
            filename="ffhq-res1024-mirror-stylegan2-noaug.pkl",
            resolution=1024,
            description="FFHQ 1024x1024, stylegan2 config, transfer-learning source net of stylegan2-ada-pytorch",
            url_source=_ADA_TRAIN,
        ),
    ]
}

_ALIASES = {"ffhq": "ffhq-1024", "ffhq1024": "ffhq-1024", "ffhq512": "ffhq-512", "ffhq256": "ffhq-256"}


def bundled_path(entry: CheckpointEntry):
    """Where a bundled network lives inside the installed package."""
    return Path(__file__).resolve().parent.parent / "models" / entry.filename


def names() -> Tuple[str, ...]:
    return tuple(REGISTRY)


def get_entry(name: str) -> Optional[CheckpointEntry]:
    """The entry for a registry name (case-insensitive; a few short aliases), or None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return REGISTRY.get(key)


def find_entry_by_url(url: str) -> Optional[CheckpointEntry]:
    """The entry whose URL is ``url`` (so a pasted official URL reuses the named cache file)."""
    for entry in REGISTRY.values():
        if entry.url and entry.url == url:
            return entry
    return None
