"""Folder runs: failures reported not fatal, resuming, batching several photos per projector call, sharding.

Uses the 64-px fixture network, a handful of downscaled dev photos and very few
steps: what is tested is the bookkeeping, not the quality.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from conftest import REPO_ROOT as REPO  # noqa: E402

from stylegan_unmask.pipeline import chain  # noqa: E402
from stylegan_unmask.projector import ProjectionConfig  # noqa: E402
from stylegan_unmask.runs.batch import read_done, run_batch  # noqa: E402
from stylegan_unmask.runs.files import list_images, plan_items  # noqa: E402
from stylegan_unmask.runs.shards import parse_shard  # noqa: E402
GOOD = [  # dev photos of people wearing masks (downscaled below to keep the test fast)
    "masked_real/cdeb7_0_0_0_copy_53.jpg",
    "masked_real/cdeb7_0_0_0_copy_81.jpg",
    "masked_real/cdeb7_0_0_0_copy_9.jpg",
    "masked_real/cdeb7_0_0_10.jpg",
    "masked_real/cdeb7_0_0_18_copy_15.jpg",
    "masked_real/cdeb7_0_0_1_copy_7.jpg",
]
BROKEN = ["broken_truncated.jpg", "notes_not_an_image.jpg"]
STEPS = 3


pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def photos(dev_data_dir, tmp_path_factory):
    """6 good photos (max side 320 px, one as PNG) + a truncated JPEG + a text file named .jpg."""
    folder = tmp_path_factory.mktemp("photos")
    for i, rel in enumerate(GOOD):
        src = dev_data_dir / rel
        if not src.is_file():
            pytest.skip(f"dev photo {src} is missing")
        im = Image.open(src).convert("RGB")
        im.thumbnail((320, 320), Image.LANCZOS)
        im.save(folder / f"photo{i}_{src.stem}{'.png' if i == 1 else '.jpg'}", quality=92)
    data = (dev_data_dir / GOOD[0]).read_bytes()
    (folder / BROKEN[0]).write_bytes(data[: len(data) * 2 // 5])
    (folder / BROKEN[1]).write_text("shopping list: eggs, milk\n")
    (folder / "readme.txt").write_text("not an image extension: ignored\n")
    return folder


@pytest.fixture(scope="module")
def G(ada_pkl):
    from stylegan_unmask.pipeline import get_network

    return get_network(ada_pkl, "cpu")


def _summary(outdir: Path):
    with open(outdir / "summary.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def first_run(photos, G, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("batch")
    summary = run_batch(photos, outdir, ProjectionConfig(steps=STEPS), G=G, device="cpu", progress=False)
    return summary, outdir


def test_good_photos_unmasked_bad_ones_reported(first_run, photos):
    summary, outdir = first_run
    assert summary.counts == {"ok": 6, "failed": 2, "skipped": 0}
    rows = _summary(outdir)
    assert len(rows) == 8
    assert [f for f, r in rows.items() if r["status"] == "failed"] == sorted(BROKEN)
    assert "truncated" in rows[BROKEN[0]]["error"] and BROKEN[0] in rows[BROKEN[0]]["error"]
    assert "not an image" in rows[BROKEN[1]]["error"]
    for f, r in rows.items():
        if r["status"] != "ok":
            continue
        d = outdir / r["outdir"]
        assert float(r["seconds"]) > 0 and np.isfinite(float(r["final_loss"])) and float(r["psnr"]) > 0
        for name in ("unmasked.png", "comparison.png", "projected_w.npz", "thumb_input.jpg", "done.json"):
            assert (d / name).is_file(), (f, name)
        assert Image.open(d / "unmasked.png").size == Image.open(photos / f).size
        assert json.loads((d / "done.json").read_text())["status"] == "ok"
    assert not list(outdir.rglob(".*.tmp"))
    html = (outdir / "index.html").read_text()
    assert "Failures (2)" in html and "truncated" in html
    for f in rows:
        assert f in html
    links = re.findall(r"(?:href|src)='([^']*)'", html)
    assert any(l.endswith("comparison.png") for l in links) and any(l.endswith("thumb_result.jpg") for l in links)
    assert all(not l.startswith("/") and ":" not in l for l in links)  # relative links only


def test_rerun_skips_finished_photos(first_run, photos, G):
    _, outdir = first_run
    done = {p: p.stat().st_mtime_ns for p in outdir.rglob("done.json")}
    assert len(done) == 6
    summary = run_batch(photos, outdir, ProjectionConfig(steps=STEPS), G=G, device="cpu", progress=False)
    assert summary.counts == {"ok": 0, "failed": 2, "skipped": 6}
    assert {p: p.stat().st_mtime_ns for p in outdir.rglob("done.json")} == done
    rows = _summary(outdir)
    assert sum(r["status"] == "skipped" for r in rows.values()) == 6
    assert all(r["final_loss"] for r in rows.values() if r["status"] == "skipped")  # earlier figures kept
    # Different settings are not "done": the photo would be recomputed.
    item = next(it for it in plan_items(photos, list_images(photos), outdir) if (it.outdir / "done.json").is_file())
    settings = json.loads((item.outdir / "done.json").read_text())["settings"]
    assert read_done(item, settings) is not None
    assert read_done(item, {**settings, "steps": STEPS + 1}) is None


def test_interrupted_run_resumes_without_redoing_photos(photos, G, tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    finished = []

    def stop_after_two(rec):
        if rec.status == "ok":
            finished.append(rec.file)
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(photos, outdir, ProjectionConfig(steps=STEPS), G=G, device="cpu", progress=False,
                  on_record=stop_after_two)
    rows = _summary(outdir)  # written on the way out
    assert sum(r["status"] == "ok" for r in rows.values()) == 2
    assert sum(r["status"] == "pending" for r in rows.values()) >= 4
    assert not list(outdir.rglob(".*.tmp"))
    kept = {f: (outdir / rows[f]["outdir"] / "done.json").stat().st_mtime_ns for f in finished}

    # A finished photo that lost an output file is redone; the other finished one is not.
    victim = finished[1]
    (outdir / rows[victim]["outdir"] / "projection.png").unlink()
    kept.pop(victim)
    # Count what the projector is asked to do, and check photos are optimised together (batch of 3).
    calls = []
    real_project = chain.project

    def counting_project(G_, target, hidden, *args, **kwargs):
        calls.append(int(target.shape[0]))
        return real_project(G_, target, hidden, *args, **kwargs)

    monkeypatch.setattr(chain, "project", counting_project)
    summary = run_batch(photos, outdir, ProjectionConfig(steps=STEPS), G=G, device="cpu", progress=False,
                        batch_size=3)
    assert summary.counts == {"ok": 5, "failed": 2, "skipped": 1}
    assert calls == [3, 2]  # 5 photos to do: one call with 3 targets, one with 2
    for f, mtime in kept.items():
        assert (outdir / rows[f]["outdir"] / "done.json").stat().st_mtime_ns == mtime
    rows = _summary(outdir)
    assert rows[victim]["status"] == "ok"
    assert {r["status"] for r in rows.values()} == {"ok", "skipped", "failed"}


def test_shards_are_disjoint_and_merged(photos, G, tmp_path):
    outdir = tmp_path / "out"
    s0 = run_batch(photos, outdir, ProjectionConfig(steps=1), G=G, device="cpu", progress=False, shard="0/2")
    rows = _summary(outdir)  # rank 0 merged what it knew: shard 1's photos are still pending
    assert sum(r["status"] == "pending" for r in rows.values()) == 4
    assert s0.summary_csv is None  # shard 1 has not finished: no final merge yet
    s1 = run_batch(photos, outdir, ProjectionConfig(steps=1), G=G, device="cpu", progress=False, shard="1/2")
    assert s1.summary_csv == outdir / "summary.csv"
    files0 = {r.file for r in s0.records}
    files1 = {r.file for r in s1.records}
    assert files0.isdisjoint(files1) and len(files0) == len(files1) == 4
    rows = _summary(outdir)
    assert set(rows) == files0 | files1
    assert sorted(r["status"] for r in rows.values()) == ["failed"] * 2 + ["ok"] * 6
    assert "merged from 2 shards" in (outdir / "index.html").read_text()


def test_listing_and_output_names(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for rel in ("a.jpg", "a.PNG", "b.jpeg", "sub/c.webp", ".hidden.jpg", "d.txt"):
        (src / rel).write_bytes(b"x")
    (src / "results").mkdir()
    (src / "results" / "old.png").write_bytes(b"x")
    flat = list_images(src, exclude=[src / "results"])
    assert [p.name for p in flat] == ["a.PNG", "a.jpg", "b.jpeg"]
    deep = list_images(src, recursive=True, exclude=[src / "results"])
    items = plan_items(src, deep, src / "results")
    assert [(it.file, it.out_rel) for it in items] == [
        ("a.PNG", "a_png"), ("a.jpg", "a_jpg"), ("b.jpeg", "b"), ("sub/c.webp", "sub/c")]
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(Exception, match="shard"):
        parse_shard("3/3")


@pytest.mark.slow
def test_torchrun_two_processes(photos, ada_pkl, tmp_path):
    outdir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "STYLEGAN_UNMASK_OPS": "ref"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stylegan_unmask", "batch", str(photos), "--outdir", str(outdir), "--network", str(ada_pkl),
           "--steps", "2", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parts = [{r["file"] for r in csv.DictReader(open(outdir / f"summary-rank{i}.csv"))} for i in (0, 1)]
    assert parts[0].isdisjoint(parts[1]) and len(parts[0]) == len(parts[1]) == 4
    rows = _summary(outdir)
    assert set(rows) == parts[0] | parts[1]
    assert sorted(r["status"] for r in rows.values()) == ["failed"] * 2 + ["ok"] * 6
    assert (outdir / "index.html").is_file()


def test_samples_per_photo_with_batches_of_two(photos, G, tmp_path):
    """--samples 2 with --batch-size 2: each photo gets its own two completions, best first, and the index
    shows their grid; a rerun with another sample count redoes the photos."""
    outdir = tmp_path / "samples"
    summary = run_batch(photos, outdir, ProjectionConfig(steps=2), G=G, device="cpu", progress=False, samples=2,
                        batch_size=2)
    assert summary.counts["ok"] == 6
    rows = _summary(outdir)
    for f, r in rows.items():
        if r["status"] != "ok":
            continue
        d = outdir / r["outdir"]
        record = json.loads((d / "completions.json").read_text())
        losses = [c["final_loss"] for c in record["completions"]]
        assert len(losses) == 2 and losses == sorted(losses)
        assert float(r["final_loss"]) == pytest.approx(losses[0], rel=1e-4, abs=0.01)  # the CSV rounds
        assert (d / "unmasked_2.png").is_file() and (d / "completions.png").is_file()
    assert "completions.png" in (outdir / "index.html").read_text()
    again = run_batch(photos, outdir, ProjectionConfig(steps=2), G=G, device="cpu", progress=False, samples=3,
                      batch_size=2)
    assert again.counts.get("skipped", 0) == 0
