"""Measure the face-mask region: landmark polygon vs segmenter, and the detection retries.

    python benchmarks/bench_segmenter.py --data ../shared/data/dev --cache /tmp/segbench [--model PATH]

Landmarks of every masked photo (and of each pair's clean twin, for the eye
check) are found once per detection strategy and cached. Then, on
``real_masks`` (hand-labelled real masks) and ``paired`` (pasted masks), it
prints detection rate, coverage median / p10 (GT body), overreach median and
photos whose region touches the clean photo's eyes, for the landmark region
and for the segmenter at the given thresholds and seam margins.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_rgb(path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def landmarks_with_pad(image, pad: float, mode: str):
    """68 points found on the photo by the ``auto`` chain without its frame retries, or (if it finds
    nothing and ``pad`` > 0) on a padded copy; None when no face is found. ``mode``: rep | const |
    grey (padding), with ``-low``: CenterFace at thresholds 0.3 then 0.15 on the padded copy."""
    from stylegan_unmask.face import detect
    from stylegan_unmask.face.landmarks import _hog_like_box, find_landmarks

    faces = detect.detect_faces(image, frame_retries=False)
    if faces:
        return find_landmarks(image, backend="dlib", box=_hog_like_box(faces[0])).points
    if pad <= 0:
        return None
    h, w = image.shape[:2]
    p = int(round(pad * max(h, w)))
    border = cv2.BORDER_REPLICATE if mode == "rep" else cv2.BORDER_CONSTANT
    padded = cv2.copyMakeBorder(image, p, p, p, p, border, value=(127, 127, 127) if mode.startswith("grey") else 0)
    if mode.endswith("-low"):
        thresholds, sides = (0.3, 0.15), (640, 384, 256)
        chain = [lambda im, t=t, s=s: detect.detect_centerface(im, side=s, threshold=t) for t in thresholds
                 for s in sides]
    else:
        chain = [lambda im: detect.detect_faces(im, frame_retries=False)]
    for find in chain:
        faces = sorted(find(padded), key=lambda f: -f.area)
        if faces:
            return find_landmarks(padded, backend="dlib", box=_hog_like_box(faces[0])).points - p
    return None


def shipped_landmarks(image):
    """What the package does: ``find_landmarks`` with the ``auto`` chain and its frame retries."""
    from stylegan_unmask.errors import NoFaceError
    from stylegan_unmask.face.landmarks import find_landmarks

    try:
        return find_landmarks(image, backend="dlib").points
    except NoFaceError:
        return None


def items(data: Path):
    """(set, id, masked, gt, clean or None) for real_masks and the unflagged paired set."""
    from stylegan_unmask.evaluation.masks import find_paired_items

    for it in find_paired_items(data / "real_masks"):
        yield "real_masks", it.id, it.masked, it.gt, None
    for it in find_paired_items(data / "paired"):
        if not it.flagged:
            yield "paired", f"{it.source}/{it.id}", it.masked, it.gt, it.clean


def cached_landmarks(data: Path, cache: Path, strategy: str):
    path = cache / f"landmarks_{strategy}.json"
    if path.is_file():
        return json.loads(path.read_text())
    pad, mode = ((0.0, "rep") if strategy in ("none", "clean", "shipped")
                 else (float(strategy.split("-")[0]) / 100, strategy.split("-", 1)[1]))
    out = {}
    for name, key, masked, gt, clean in items(data):
        if strategy == "clean":
            pts = None
        elif strategy == "shipped":
            pts = shipped_landmarks(load_rgb(masked))
        else:
            pts = landmarks_with_pad(load_rgb(masked), pad, mode)
        entry = {"masked": None if pts is None else pts.tolist()}
        if clean is not None and strategy == "clean":
            cpts = shipped_landmarks(load_rgb(clean))
            entry["masked"] = None if cpts is None else cpts.tolist()
        out[f"{name}/{key}"] = entry
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def summarise(rows):
    cov = np.array([r["cov"] for r in rows])
    ovr = np.array([r["over"] for r in rows])
    eyes = [r["eye"] for r in rows if r.get("eye") is not None]
    return (f"cov med {np.median(cov):.3f} p10 {np.percentile(cov, 10):.3f}  over med {np.median(ovr):.3f} "
            f"p90 {np.percentile(ovr, 90):.3f}  eyes_hit {sum(e > 0 for e in eyes)}/{len(eyes)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dev"))
    ap.add_argument("--cache", default="/tmp/segbench")
    ap.add_argument("--model", default=None, help="segmenter weights (default: the shipped ones)")
    ap.add_argument("--strategies", default="none,25-rep,25-const,10-grey-low,shipped",
                    help="detection strategies to measure (PAD%%-MODE[-low], none, shipped)")
    ap.add_argument("--use", default="shipped", help="detection strategy the regions are measured with")
    ap.add_argument("--thresholds", default="0.3")
    ap.add_argument("--seams", default="0.03")
    ap.add_argument("--fills", default="hull")
    ap.add_argument("--single-frame", action="store_true", help="no zoomed-out second frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worst", type=int, default=0, help="write overlays of the N worst photos per set")
    ap.add_argument("--overlays", type=int, default=0,
                    help="only write landmark | segment overlays of N masked_real photos (+ the former misses) to "
                         "CACHE/overlays and stop")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    data, cache = Path(args.data), Path(args.cache)
    if args.overlays:
        return write_overlays(data / "masked_real", cache / "overlays", args.overlays)
    lms = {}
    for s in args.strategies.split(","):
        t = time.perf_counter()
        lms[s] = cached_landmarks(data, cache, s)
        for name in ("real_masks", "paired"):
            found = [v["masked"] is not None for k, v in lms[s].items() if k.startswith(name + "/")]
            print(f"detection {s:>9} {name:<10}: {sum(found)}/{len(found)} ({np.mean(found):.1%})"
                  f"  [{time.perf_counter() - t:.0f} s]")
    results, times, per_photo = measure(data, lms[args.use], cached_landmarks(data, cache, "clean"), args)
    for k, rows in results.items():
        for name in ("real_masks", "paired"):
            sel = [r for r in rows if r["set"] == name]
            print(f"{' '.join(str(v) for v in k):<22} {name:<10} n={len(sel):<4} {summarise(sel)}")
    print(f"segmenter: {1000 * np.median(times):.1f} ms per face (median; encoder + decoder + warp back), "
          f"{torch.get_num_threads()} thread(s)")
    if args.worst:
        write_worst(per_photo, cache / "worst", args.worst)


def measure(data: Path, lm, clean_lm, args):
    """Both regions on every photo with a face: (figures per setting, seconds per face, rows for --worst)."""
    from stylegan_unmask.evaluation.masks import coverage_overreach, eye_overlap
    from stylegan_unmask.face.mask import mask_from_landmarks
    from stylegan_unmask.face.segment import (clean_region, frame_matrix, from_frame, load_segmenter,
                                              probability_map, to_frame)

    model = load_segmenter(args.model)
    thresholds = [float(v) for v in args.thresholds.split(",")]
    seams = [float(v) for v in args.seams.split(",")]
    fills = args.fills.split(",")
    results, times, per_photo = {("landmarks",): []}, [], []

    def score(region, gt, name, key, cpts):
        r = dict(zip(("cov", "full", "over"), coverage_overreach(region, gt)), set=name, id=key)
        r["eye"] = None if cpts is None else eye_overlap(region, cpts)
        return r

    for name, key, masked, gtp, clean in items(data):
        e = lm[f"{name}/{key}"]
        if e["masked"] is None:
            continue
        img = load_rgb(masked)
        gt = cv2.imread(str(gtp), cv2.IMREAD_GRAYSCALE) > 127
        pts = np.array(e["masked"])
        c = clean_lm[f"{name}/{key}"]["masked"] if name == "paired" else None
        cpts = None if c is None else np.array(c)
        region = mask_from_landmarks(pts, gt.shape)
        row = score(region, gt, name, key, cpts)
        results[("landmarks",)].append(row)
        t = time.perf_counter()
        if args.single_frame:
            m = frame_matrix(pts)
            prob = from_frame(model.probabilities(to_frame(img, m)[None])[0], m, img.shape)
        else:
            prob = probability_map(img, pts, model, thresholds[0])[0]
        times.append(time.perf_counter() - t)
        for th in thresholds:
            for sm in seams:
                for fill in fills:
                    reg = clean_region(prob > th, pts, seam=sm, shape_fill=fill)
                    r = score(reg, gt, name, key, cpts)
                    results.setdefault(("segment", th, sm, fill), []).append(r)
                    if (th, sm, fill) == (thresholds[0], seams[0], fills[0]):
                        per_photo.append((name, key, masked, gt, region, reg, r, row))
    return results, times, per_photo


def write_worst(per_photo, out: Path, n: int):
    """Side-by-side overlays (GT | landmarks | segmenter) of the photos with the lowest segmenter coverage."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("real_masks", "paired"):
        sel = sorted([p for p in per_photo if p[0] == name], key=lambda p: p[6]["cov"] - p[6]["over"])[:n]
        for _, key, masked, gt, lreg, sreg, r, lrow in sel:
            img = load_rgb(masked)
            tiles = [overlay(img, gt, (0, 200, 0)), overlay(img, lreg, (255, 160, 0)), overlay(img, sreg, (255, 0, 80))]
            sheet = np.hstack([cv2.resize(t, (256, int(256 * img.shape[0] / img.shape[1]))) for t in tiles])
            fn = out / f"{name}_{key.replace('/', '_')}_cov{r['cov']:.2f}_over{r['over']:.2f}.png"
            cv2.imwrite(str(fn), sheet[:, :, ::-1])


#: masked_real photos no detector found before the frame retries (docs/detectors.md)
FORMER_MISSES = ("fm12k_Train_Augmented_269_2176960.jpg", "fm12k_Train_Augmented_657_6663902.jpg",
                 "fm12k_Train_Augmented_787_8213806.jpg")


def write_overlays(folder: Path, out: Path, n: int):
    """landmark region (orange) | segmented region (magenta) on N photos spread over the sorted folder."""
    from stylegan_unmask.face.frontend import face_region

    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    chosen = [files[int(i)] for i in np.linspace(0, len(files) - 1, n)]
    chosen += [folder / name for name in FORMER_MISSES if (folder / name) not in chosen]
    for path in chosen:
        img = load_rgb(path)
        pts = shipped_landmarks(img)
        if pts is None:
            print(f"{path.name}: no face")
            continue
        tiles = [overlay(img, face_region(img, pts, r)[0], c) for r, c in (("landmarks", (255, 160, 0)),
                                                                          ("segment", (255, 0, 80)))]
        side = 320
        sheet = np.hstack([cv2.resize(t, (side, int(side * img.shape[0] / img.shape[1]))) for t in tiles])
        cv2.imwrite(str(out / (path.stem + ".png")), sheet[:, :, ::-1])
    print(f"{len(chosen)} overlays -> {out}")


def overlay(img, region, colour):
    out = img.astype(np.float32).copy()
    out[region] = 0.55 * out[region] + 0.45 * np.array(colour, np.float32)
    out = out.astype(np.uint8)
    cs, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, cs, -1, colour, max(1, img.shape[0] // 250))
    return out


if __name__ == "__main__":
    main()
