"""``align``, ``mask`` and ``eval-masks``: the face front end on the command line."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UnmaskError

LANDMARK_BACKENDS = ("auto", "dlib", "face-alignment")  # mirrors stylegan_unmask.landmarks

_photo = click.argument("photo", type=click.Path(dir_okay=False, path_type=Path))
_landmarks = click.option("--landmarks", "landmarks_file", type=click.Path(dir_okay=False, path_type=Path),
                          help="68x2 landmarks (.npy/.txt) instead of detecting them.")
_box = click.option("--box", default=None, metavar="X0,Y0,X1,Y1", help="Face box in photo pixels.")
_face_index = click.option("--face-index", type=click.IntRange(min=0), default=None,
                           help="Which face (0 = largest) when there are several.")
_backend = click.option("--backend", type=click.Choice(LANDMARK_BACKENDS), default="auto", show_default=True,
                        help="Landmark detector.")


def _load_and_locate(photo, landmarks_file, box, face_index, backend):
    from ..face import parse_box, photo_landmarks
    from ..images import load_image

    loaded = load_image(photo)
    points = photo_landmarks(loaded.pixels, path=photo, landmarks_file=landmarks_file, box=parse_box(box),
                             face_index=face_index, backend=backend)
    return loaded, points


@click.command("align")
@_photo
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Aligned face image to write.")
@click.option("--size", type=click.IntRange(16, 4096), default=1024, show_default=True,
              help="Output size in pixels (the generator's resolution).")
@_landmarks
@_box
@_face_index
@_backend
@click.option("--save-landmarks", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the photo's 68x2 landmarks (.npy) for reuse with --landmarks.")
@click.option("--debug", "debug_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the photo with landmarks, FFHQ quad and mask outline drawn on it.")
def align_command(photo, output, size, landmarks_file, box, face_index, backend, save_landmarks, debug_path):
    """Crop PHOTO to an FFHQ-aligned face, exactly like the FFHQ dataset."""

    from ..align import align_face
    from ..face import debug_overlay
    from ..images import ensure_not_input, save_image
    from ..mask import mask_from_landmarks

    protect = [photo, landmarks_file]
    for extra in (save_landmarks, debug_path):
        if extra is not None:
            ensure_not_input(extra, protect)
    loaded, points = _load_and_locate(photo, landmarks_file, box, face_index, backend)
    face = align_face(loaded.pixels, points, output_size=size)
    save_image(output, face.image, protect=protect)
    click.echo(f"aligned {size}x{size} face -> {output}")
    if save_landmarks is not None:
        if save_landmarks.suffix.lower() != ".npy":
            raise UnmaskError(f"{save_landmarks}: --save-landmarks writes NumPy .npy files")
        _atomic_npy(save_landmarks, points)
        click.echo(f"landmarks -> {save_landmarks}")
    if debug_path is not None:
        mask = mask_from_landmarks(points, loaded.pixels.shape)
        save_image(debug_path, debug_overlay(loaded.pixels, points, face.transform.quad, mask), protect=protect)
        click.echo(f"debug overlay -> {debug_path}")


def _atomic_npy(path: Path, array) -> None:
    import numpy as np

    from ..atomic import atomic_file

    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array, dtype=np.float64))


@click.command("mask")
@_photo
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Mask PNG to write (single channel, 255 = masked, size of the photo).")
@click.option("--margin", type=click.FloatRange(min=0), default=None,
              help="Reach beyond the jaw line, in inter-ocular distances  [default: mask.DEFAULT_MARGIN]")
@_landmarks
@_box
@_face_index
@_backend
def mask_command(photo, output, margin, landmarks_file, box, face_index, backend):
    """Write the face-mask region of PHOTO as a black/white PNG (edit it and pass it back with --mask)."""
    from ..images import save_image
    from ..mask import DEFAULT_MARGIN, mask_from_landmarks

    if output.suffix.lower() not in (".png", ".tif", ".tiff", ".bmp"):
        raise UnmaskError(f"{output}: write masks as a lossless image (.png); JPEG would blur the edges")
    loaded, points = _load_and_locate(photo, landmarks_file, box, face_index, backend)
    m = mask_from_landmarks(points, loaded.pixels.shape, margin=DEFAULT_MARGIN if margin is None else margin)
    save_image(output, m, protect=[photo, landmarks_file])
    h, w = m.shape
    click.echo(f"mask {w}x{h}, {m.mean():.1%} masked -> {output}")


@click.command("eval-masks")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per photo.")
@_backend
@click.option("--margin", type=click.FloatRange(min=0), default=None,
              help="Mask margin in inter-ocular distances  [default: mask.DEFAULT_MARGIN]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items (sorted).")
def eval_masks_command(folder, csv_path, backend, margin, limit):
    """Detection rate, coverage and overreach of the landmark mask over FOLDER.

    FOLDER is a paired set (<source>/<id>/{masked.jpg, clean.*, gt_mask.png})
    or a folder of masked photos (detection rate only).
    """
    from ..eval_masks import evaluate_folder, format_report, write_csv
    from ..mask import DEFAULT_MARGIN

    report = evaluate_folder(folder, backend=backend, margin=DEFAULT_MARGIN if margin is None else margin,
                             limit=limit)
    click.echo(format_report(report))
    if csv_path is not None:
        write_csv(report, csv_path)
        click.echo(f"per-photo results -> {csv_path}")
