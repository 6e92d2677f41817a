"""The process the stages run in: device choice, CPU capabilities, ``torch.compile``, memory.

=================  ============================================================
``device``         which device to run on, and which one a network lives on
``cpu``            what the CPU can do natively (bf16), read once from torch and
                   the CPU flags
``compile``        a function through ``torch.compile`` where that works, as it
                   is where it does not (one warning)
``huge_pages``     2 MiB pages for torch's large CPU tensors
``heap_reuse``     freed large CPU tensors kept for reuse instead of unmapped
=================  ============================================================

``import stylegan_unmask`` turns on the last two before torch allocates
anything, so this package must stay importable without torch.
"""
