"""Segmenter training data (masks drawn on faces) and the decoder trainer, on a tiny scale."""
from __future__ import annotations

import numpy as np
import pytest

from stylegan_unmask.face.segment import FRAME_SIZE, frame_matrix
from stylegan_unmask.training import segmenter_data as sd

from conftest import FRONTAL_FACE

FACE = FRONTAL_FACE * 0.8  # a 200 px crop, like UTKFace


def _face_image(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((200, 200, 3), (190, 150, 130), np.uint8)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def test_samples_have_the_frame_shape_and_a_sane_label():
    rng = np.random.default_rng(0)
    fits = []
    for _ in range(24):
        s = sd.draw_sample(_face_image(), FACE, rng, other=_face_image(1))
        assert s.frame.shape == (FRAME_SIZE, FRAME_SIZE, 3) and s.frame.dtype == np.uint8
        assert s.label.shape == s.weight.shape == (FRAME_SIZE, FRAME_SIZE)
        assert set(np.unique(s.label)) <= {0, 1} and set(np.unique(s.weight)) <= {0, 1}
        known = s.label[s.weight > 0]
        fits.append(known.mean() if known.size else 0.0)
    fits = np.array(fits)
    assert (fits > 0.05).mean() > 0.8 and fits.max() < 0.9  # a mask on the face, not the whole frame


def test_outlines_never_reach_the_eyes_and_vary():
    rng = np.random.default_rng(1)
    tops, fits = [], set()
    for _ in range(60):
        poly, fit = sd.random_outline(FACE, rng)
        fits.add(fit)
        tops.append(poly[:, 1].min())
    assert fits == {"over_nose", "under_nose", "low", "kn95"}
    assert np.ptp(tops) > 20  # from under the eyes to under the nose


def test_randomised_appearance_is_reproducible():
    a = sd.draw_sample(_face_image(), FACE, np.random.default_rng(7), other=_face_image(1))
    b = sd.draw_sample(_face_image(), FACE, np.random.default_rng(7), other=_face_image(1))
    np.testing.assert_array_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.label, b.label)


def test_tiny_training_run_saves_a_loadable_fp16_decoder(tmp_path, one_thread):
    import torch

    from stylegan_unmask.face.segment import load_segmenter
    from stylegan_unmask.training.segmenter import SegmenterTrainConfig, train_segmenter

    rng = np.random.default_rng(0)
    samples = [sd.draw_sample(_face_image(i), FACE, rng, other=_face_image(99)) for i in range(10)]
    data = tmp_path / "data.npz"
    np.savez(data, frames=np.stack([s.frame for s in samples]), labels=np.stack([s.label for s in samples]),
             weights=np.stack([s.weight for s in samples]), faces=np.array(["x"] * 10))
    logs = []
    out = train_segmenter(data, tmp_path / "model", SegmenterTrainConfig(epochs=2, batch=4, val=2),
                          progress=False, log=logs.append)
    assert out.name == "segmenter.pt" and len(logs) == 3
    blob = torch.load(out, map_location="cpu", weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in blob["decoder"].values())
    assert len(blob["meta"]["history"]) == 2
    model = load_segmenter(out)
    prob = model.probabilities(samples[0].frame[None])
    assert prob.shape == (1, FRAME_SIZE, FRAME_SIZE)
