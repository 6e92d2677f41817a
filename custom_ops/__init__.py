"""CUDA/C++ sources of the fused ops (``bias_act``, ``upfirdn2d``).

Each op is three files, and each file names its Python wrapper:
``<op>.h`` (the math, also compilable for the CPU), ``<op>.cpp`` (argument
checks, the Python binding), ``<op>.cu`` (the kernel launch); the wrapper,
``torch_utils/ops/<op>.py``, holds autograd, the reference implementation and
the plugin spec naming these files.

Nothing here is imported at run time: ``torch_utils/custom_ops.py`` compiles these
files on first use (never at install time, so a CPU-only install needs no
compiler) and caches the build. The package exists so that the sources ship as
package data next to ``torch_utils``.
"""
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
