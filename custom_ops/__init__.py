"""CUDA/C++ sources of the fused ops (``bias_act``, ``upfirdn2d``).

Nothing here is imported at run time: ``torch_utils/custom_ops.py`` compiles these
files on first use (never at install time, so a CPU-only install needs no
compiler) and caches the build. The package exists so that the sources ship as
package data next to ``torch_utils``.
"""
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
