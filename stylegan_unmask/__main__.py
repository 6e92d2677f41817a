"""``python -m stylegan_unmask``: the command line (also what torchrun starts for sharded batch runs)."""
from .cli import main

main()
