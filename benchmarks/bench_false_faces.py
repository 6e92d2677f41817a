"""How often the detector chain finds a face where there is none, with and without the padded retry.

Face-free images: 128 px tiles cut from the dev photos well away from every face the chain
finds there (at least a face width beside the box, 1.5 heights below it), plus scikit-image's
sample pictures that show no person. The padded retry (``FRAME_RETRIES``) only runs where the
chain found nothing, so it can only add false faces on photos like these.

    python benchmarks/bench_false_faces.py [--dev ../shared/data/dev] [--save-dir DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

#: scikit-image samples with no person in them (``camera`` and ``astronaut`` show faces).
FACE_FREE_SAMPLES = ("coffee", "rocket", "coins", "chelsea", "horse", "moon", "page", "text", "brick", "grass",
                     "gravel", "hubble_deep_field", "immunohistochemistry", "retina", "cell", "colorwheel",
                     "logo", "clock")
TILE, TILES_PER_PHOTO = 128, 2


def sample_images():
    import skimage.data

    for name in FACE_FREE_SAMPLES:
        a = np.asarray(getattr(skimage.data, name)())
        if a.dtype != np.uint8:
            a = (np.clip(a, 0, 1) * 255).astype(np.uint8) if a.max() <= 1 else np.clip(a, 0, 255).astype(np.uint8)
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        yield f"skimage:{name}", np.ascontiguousarray(a)


def face_zone(shape, faces) -> np.ndarray:
    """1 where a tile must not reach: every box grown by a width each side, a height above, 1.5 below."""
    zone = np.zeros(shape[:2], np.uint8)
    for f in faces:
        x0, y0, x1, y1 = f.box
        w, h = x1 - x0, y1 - y0
        zone[max(0, int(y0 - h)):max(0, int(y1 + 1.5 * h)), max(0, int(x0 - w)):max(0, int(x1 + w))] = 1
    return zone


def background_tiles(photo: Path, image: np.ndarray, faces):
    zone = face_zone(image.shape, faces)
    found = 0
    for y in range(0, image.shape[0] - TILE + 1, TILE // 2):
        for x in range(0, image.shape[1] - TILE + 1, TILE // 2):
            if found < TILES_PER_PHOTO and not zone[y:y + TILE, x:x + TILE].any():
                yield f"{photo}@{x},{y}", image[y:y + TILE, x:x + TILE].copy()
                zone[y:y + TILE, x:x + TILE] = 1
                found += 1


def negatives(dev: Path):
    from stylegan_unmask.face.detect import detect_faces
    from stylegan_unmask.images import load_image

    yield from sample_images()
    photos = sorted(dev.glob("paired/*/*/masked.*")) + sorted(dev.glob("masked_real/*.jpg"))
    for photo in photos:
        image = load_image(photo).pixels
        faces = detect_faces(image)
        if faces:  # a tile is face-free only when we know where the faces are
            yield from background_tiles(photo, image, faces)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "dev")
    ap.add_argument("--save-dir", type=Path, help="write every false face's image here, box drawn")
    args = ap.parse_args()
    from tqdm import tqdm

    from stylegan_unmask.face.detect import detect_faces

    items = list(tqdm(negatives(args.dev), desc="face-free images", unit="img"))
    print(f"{len(items)} face-free images ({sum(n.startswith('skimage:') for n, _ in items)} scikit-image samples)")
    for retries in (False, True):
        hits = [(n, img, f) for n, img in tqdm(items, desc=f"retries {retries}", leave=False)
                for f in detect_faces(img, frame_retries=retries)[:1]]
        label = "chain + padded retry" if retries else "chain alone"
        print(f"{label:<22} false faces on {len(hits)}/{len(items)} ({len(hits) / len(items):.1%})")
        for name, img, f in hits:
            print(f"    {name}  score {f.score:.2f}  by {f.backend}")
            if args.save_dir and retries:
                args.save_dir.mkdir(parents=True, exist_ok=True)
                out = img[..., ::-1].copy()
                cv2.rectangle(out, tuple(int(v) for v in f.box[:2]), tuple(int(v) for v in f.box[2:]), (0, 0, 255), 2)
                cv2.imwrite(str(args.save_dir / (name.replace("/", "_").replace(":", "_") + ".png")), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
