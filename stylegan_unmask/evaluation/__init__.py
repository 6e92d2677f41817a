"""Unmask quality, measured against ground truth (``stylegan-unmask eval-unmask`` / ``synth-masks``).

One job per module; typed dataclasses pass between them:

=================  =============================================================
``data``           paired folders (``<id>/{masked.*, clean.*, gt_mask.png}``) ->
                   :class:`~.data.Pair` / :class:`~.data.LoadedPair`
``methods``        the registry of fill methods (ours, OpenCV Telea / NS,
                   no change); each fills the same region of the same photo
``metrics``        per-result figures against the clean photo (PSNR/SSIM/LPIPS
                   inside the ground-truth mask, whole-photo PSNR/SSIM,
                   dlib identity distance, face found) -> ``dict``
``stats``          median, mean, bootstrap interval, how often ours wins
``plots``          matplotlib distribution plots
``html``           the sortable ``index.html``
``run``            the resumable, batched evaluation run tying it together
                   (its bookkeeping is the folder runs', ``runs/bookkeeping.py``)
``synth_masks``    drawing realistic face masks on clean faces, exact GT kept
``masks``          the mask region against ground truth: detection rate,
                   coverage, overreach (``stylegan-unmask eval-masks``)
=================  =============================================================

Definitions of every figure: ``docs/evaluation.md``.
"""
