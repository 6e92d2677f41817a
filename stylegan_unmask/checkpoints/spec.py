"""What a checkpoint reader hands to the generator builder.

Readers for different file formats (NVIDIA pickles, rosinality ``.pt``) all
return a :class:`NetworkSpec`: constructor arguments for
:class:`stylegan_unmask.networks.stylegan2.Generator` and a state dict in
NVIDIA's parameter names, so building the network is format independent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

FORMAT_NVIDIA_PICKLE = "nvidia-pickle"
FORMAT_ROSINALITY = "rosinality"
FORMAT_OURS = "stylegan-unmask"


@dataclass
class NetworkSpec:
    """A generator read from a checkpoint file, not yet instantiated.

    ``init_kwargs`` are keyword arguments for ``Generator(**init_kwargs)``;
    ``state_dict`` maps NVIDIA names (``synthesis.b4.const``, ``mapping.w_avg``, ...)
    to CPU tensors. ``notes`` records anything the reader had to decide or compute
    (e.g. a ``w_avg`` computed because the file had none), for logs and reports.
    """

    init_kwargs: Dict[str, Any]
    state_dict: Dict[str, torch.Tensor]
    format: str
    source: str
    key: str = "G_ema"
    class_name: str = "Generator"
    raw_init_kwargs: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: Zoom of the FFHQ crop the training faces were aligned with (1.0 = FFHQ; official networks).
    crop_scale: float = 1.0
    #: What the training run recorded (our own networks only).
    training: Dict[str, Any] = field(default_factory=dict)
    #: Projection settings the network file recommends, e.g. {"w_prior": 5.0} (our own networks only).
    projection: Dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> Dict[str, torch.Tensor]:
        """Alias of ``state_dict`` (the name used in docs/architecture.md)."""
        return self.state_dict

    @property
    def w_avg(self) -> Optional[torch.Tensor]:
        return self.state_dict.get("mapping.w_avg")

    @property
    def img_resolution(self) -> int:
        return int(self.init_kwargs["img_resolution"])

    def num_params(self) -> int:
        """Number of elements in the state dict (parameters and buffers)."""
        return sum(int(t.numel()) for t in self.state_dict.values())
