"""stylegan-unmask: show the face beneath a face mask.

The package reads as the data flow; docs/architecture.md draws it:
``face`` (photo -> aligned face + mask) -> ``projector`` (masked W+
projection into the generator from ``networks``/``checkpoints``) -> ``face``
again (blend, paste back), tied together by ``pipeline`` (one photo), ``runs``
(folders) and driven by ``cli``; ``evaluation`` and ``training`` build on them.
Heavy dependencies (torch, OpenCV, dlib) are imported by the stages, not here,
so ``import stylegan_unmask`` stays cheap.
"""

#: The network every entry point uses unless told otherwise (a name in ``checkpoints/registry.py``).
DEFAULT_NETWORK = "faces-128"

__version__ = "0.1.0"

from stylegan_unmask.runtime.heap_reuse import keep_freed_memory as _keep_freed_memory  # noqa: E402
from stylegan_unmask.runtime.huge_pages import request_huge_pages as _request_huge_pages  # noqa: E402

# Before torch allocates anything: big CPU tensors on 2 MiB pages, and freed ones kept
# for reuse instead of unmapped and faulted in again (runtime/huge_pages.py, runtime/heap_reuse.py).
_request_huge_pages()
_keep_freed_memory()
