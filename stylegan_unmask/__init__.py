"""stylegan-unmask: show the face beneath a face mask.

Data flow (one module per stage):
detect -> landmarks -> align -> mask -> project -> blend -> paste back.
Heavy dependencies (torch, OpenCV, dlib) are imported by the stage modules,
not here, so ``import stylegan_unmask`` stays cheap.
"""

from stylegan_unmask.heap_reuse import keep_freed_memory as _keep_freed_memory
from stylegan_unmask.huge_pages import request_huge_pages as _request_huge_pages

# Before torch allocates anything: big CPU tensors on 2 MiB pages (1.4x faster CPU projection; huge_pages.py),
# and freed ones kept for reuse instead of unmapped and faulted in again (heap_reuse.py).
_request_huge_pages()
_keep_freed_memory()

__version__ = "0.1.0"
