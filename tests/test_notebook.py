"""notebooks/explore.ipynb runs top to bottom (with its default network, the shipped faces-128, ~20 steps) without errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
PHOTO = "masked_real/cdeb7_with_mask087.jpg"  # a dev photo of a person wearing a mask


@pytest.mark.slow
def test_explore_notebook_executes(dev_data_dir, tmp_path, monkeypatch):
    photo = dev_data_dir / PHOTO
    if not photo.is_file():
        pytest.skip(f"dev photo {photo} is missing")
    outdir = tmp_path / "nb-out"
    # The kernel inherits this environment: the notebook's parameters, and the repository on the path.
    monkeypatch.delenv("NETWORK", raising=False)  # the notebook's default: faces-128, shipped, no download
    monkeypatch.setenv("PHOTO", str(photo))
    monkeypatch.setenv("STEPS", "20")
    monkeypatch.delenv("SAMPLES", raising=False)  # the notebook's default: 4 completions
    monkeypatch.setenv("PREVIEW_EVERY", "5")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("OUTDIR", str(outdir))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend renders the figures
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert all(c.get("execution_count") for c in code)  # every cell ran
    text = "\n".join(o.get("text", "") for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "final loss" in text and "PSNR outside the mask" in text
    images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # landmarks/mask figure, comparison, photo vs result, settings side by side, losses
    widgets = [o for c in code for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets  # the controls + live preview
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    previews = [m for m in state.values() if m.get("model_name") == "ImageModel"]
    labels = [m["state"].get("value", "") for m in state.values() if m.get("model_name") == "LabelModel"]
    assert previews and any(v.startswith("step 20/20") for v in labels)  # the live preview reached the last step
    assert "4 completions in" in text  # section 4: the samples side by side
    for name in ("unmasked.png", "comparison.png", "projected_w.npz", "unmasked_chosen.png", "projected_w_chosen.npz"):
        assert (outdir / name).is_file()
