"""The face: from a photo to an aligned face and its mask region, and back into the photo.

=================  ============================================================
``detect``         face boxes (CenterFace for masked faces, dlib HOG/CNN)
``landmarks``      68-point landmarks (dlib, face-alignment) or given ones
``align``          FFHQ alignment and its inverse (``AlignTransform``)
``mask``           the region a face mask hides, from the landmarks; user masks
``segment``        the region a face mask hides, segmented by a small network
                   (the default region; see docs/masks.md)
``blend``          Poisson blend in aligned space, feathered paste back
``frontend``       photo -> aligned face + mask + projection target
                   (:func:`~.frontend.prepare_face`, ``FaceOptions``), and what
                   the ``align`` / ``mask`` commands run
=================  ============================================================

No torch at import: only ``segment`` loads it (and its small network), when a
region is segmented.
"""
