"""PyTorch utilities shared by the generator: fused ops and their plugin loader.

The package name and the op signatures follow NVIDIA's ``torch_utils`` so that
network code written against the official StyleGAN2 implementation reads the
same; the implementation is this project's own.
"""
