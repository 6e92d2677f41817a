"""Network architectures, with the official module and parameter names so official weights load as-is."""
from .stylegan2 import Generator, MappingNetwork, SynthesisNetwork

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork"]
