"""What the evaluation itself costs per photo, next to the projection it measures.

Usage (from the repository root)::

    python benchmarks/bench_evaluation.py                   # 3 small + 2 large dev pairs, 1 thread
    python benchmarks/bench_evaluation.py --threads 2 --repeat 3
    python benchmarks/bench_evaluation.py --synth 20        # also synth-masks per face

Runs each stage of ``eval-unmask`` except the projection (see
``bench_projector.py`` for that) on dev pairs of ``../shared/data/dev/paired``:
the small prajnasb web photos (~200-450 px) and the 1024-px mfn (FFHQ) pairs,
and prints a Markdown table of median wall seconds per photo: loading the
pair, the front end (detect, landmarks, align, mask), each baseline's fill,
every figure (LPIPS on the 128-px crop, SSIM in the mask and over the photo,
the two PSNRs, the identity descriptor of one result), writing one result PNG.
Model loading is excluded (done once before timing). With ``--synth N`` it
also times ``synth_masks.draw_mask`` (landmarks excluded) on N dev faces.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = Path(os.environ.get("STYLEGAN_UNMASK_SHARED", REPO.parent / "shared")) / "data" / "dev"


def timed(fn, repeat):
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=3, help="prajnasb pairs")
    ap.add_argument("--large", type=int, default=2, help="mfn 1024-px pairs")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synth", type=int, default=0, help="also time drawing masks on this many dev faces")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from stylegan_unmask.evaluation import metrics as M
    from stylegan_unmask.evaluation.data import find_pairs, load_pair
    from stylegan_unmask.evaluation.methods import FillInput, MethodContext, build_methods
    from stylegan_unmask.evaluation.run import region_in_photo
    from stylegan_unmask.images import save_image
    from stylegan_unmask.face.frontend import prepare_face

    if not (DEV / "paired").is_dir():
        sys.exit(f"dev data not found at {DEV} (the ../shared folder beside the repository)")
    pairs = ([p for p in find_pairs(DEV / "paired" / "prajnasb")][: args.small]
             + [p for p in find_pairs(DEV / "paired" / "mfn")][: args.large])
    scorer = M.Scorer("cpu")
    baselines = build_methods(["telea", "ns", "none"], MethodContext())
    warm = load_pair(pairs[0])  # load LPIPS/dlib/detector models before timing
    scorer.score([warm.clean], warm.clean, warm.gt, scorer.reference_face(warm.clean))

    stages = ["load pair", "front end", "telea", "ns", "none", "LPIPS x1", "SSIM mask", "SSIM photo", "PSNR x2",
              "identity x1", "save PNG", "score 4 results"]
    rows = {"small": {s: [] for s in stages}, "large": {s: [] for s in stages}}
    sizes = {"small": [], "large": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    for pair in pairs:
        group = "large" if "mfn" in str(pair.folder) else "small"
        t = rows[group]
        lp, s = timed(lambda: load_pair(pair), args.repeat)
        t["load pair"].append(s)
        sizes[group].append(lp.size)
        face, s = timed(lambda: prepare_face(lp.masked, 64), args.repeat)
        t["front end"].append(s)
        item = FillInput(pair.key, lp.masked.pixels, region_in_photo(face), face)
        results = []
        for m in baselines:
            (out,), s = timed(lambda: m.fill_batch([item]), args.repeat)
            t[m.name].append(s)
            results.append(out.image)
        r = results[0]
        t["LPIPS x1"].append(timed(lambda: scorer.lpips([r], lp.clean, lp.gt), args.repeat)[1])
        t["SSIM mask"].append(timed(lambda: M.ssim_in_mask(r, lp.clean, lp.gt), args.repeat)[1])
        t["SSIM photo"].append(timed(lambda: M.ssim_map(r, lp.clean), args.repeat)[1])
        t["PSNR x2"].append(timed(lambda: (M.psnr(r, lp.clean, lp.gt), M.psnr(r, lp.clean)), args.repeat)[1])
        ref = scorer.reference_face(lp.clean)
        t["identity x1"].append(timed(lambda: scorer.identity.find(r, ref.box), args.repeat)[1])
        t["save PNG"].append(timed(lambda: save_image(tmp / "r.png", r), args.repeat)[1])
        four = results + [results[0]]
        t["score 4 results"].append(timed(lambda: scorer.score(four, lp.clean, lp.gt, ref), args.repeat)[1])

    def size_text(group):
        if not sizes[group]:
            return "-"
        return ", ".join(f"{w}x{h}" for w, h in sizes[group])

    print(f"\nseconds per photo (median over photos of the median of {args.repeat} runs), "
          f"torch threads {args.threads}, CPU\n")
    print(f"| stage | small ({size_text('small')}) | large ({size_text('large')}) |")
    print("|---|---|---|")
    for s in stages:
        cells = [f"{statistics.median(rows[g][s]):.3f}" if rows[g][s] else "-" for g in ("small", "large")]
        print(f"| {s} | {cells[0]} | {cells[1]} |")

    if args.synth:
        from stylegan_unmask.evaluation.synth_masks import draw_mask, face_rng
        from stylegan_unmask.images import load_image
        from stylegan_unmask.face.landmarks import find_landmarks

        faces = sorted((DEV / "faces").glob("*.jpg"))
        picked = faces[:: max(1, len(faces) // args.synth)][: args.synth]
        by_size = {}
        for f in picked:
            img = load_image(f).pixels
            try:
                lm = find_landmarks(img)
            except Exception:  # noqa: BLE001 - no face: not timed
                continue
            _, s = timed(lambda: draw_mask(img, lm.points, face_rng(0, f.stem)), args.repeat)
            by_size.setdefault(f"{img.shape[1]}x{img.shape[0]}", []).append(s)
        print("\n| synth-masks draw_mask | faces | median s | max s |\n|---|---|---|---|")
        for k, v in sorted(by_size.items()):
            print(f"| {k} | {len(v)} | {statistics.median(v):.3f} | {max(v):.3f} |")


if __name__ == "__main__":
    main()
