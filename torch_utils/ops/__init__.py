"""Custom ops of the StyleGAN2 generator.

Each op has a reference PyTorch implementation (any device, gradients of any
order) and a fused CUDA kernel with the same signature, compiled on first use by
``torch_utils.custom_ops``; ``impl='ref'`` or ``STYLEGAN_UNMASK_OPS=ref`` forces
the reference.
"""
from . import bias_act, upfirdn2d

__all__ = ["bias_act", "upfirdn2d"]
