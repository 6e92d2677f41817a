"""``align``, ``mask`` and ``eval-masks``: the face front end on the command line.

Thin wrappers: the work is done by :func:`stylegan_unmask.face.frontend.align_photo`,
:func:`stylegan_unmask.face.frontend.mask_photo` and
:func:`stylegan_unmask.evaluation.masks.evaluate_folder`, which the notebook and
tests call directly. Like every command module, this one imports the work
lazily, inside the commands, so ``--help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UnmaskError

LANDMARK_BACKENDS = ("auto", "dlib", "face-alignment")  # mirrors face/landmarks.py (tests/cli check it)

_photo = click.argument("photo", type=click.Path(dir_okay=False, path_type=Path))
_landmarks = click.option("--landmarks", "landmarks_file", type=click.Path(dir_okay=False, path_type=Path),
                          help="68x2 landmarks (.npy/.txt/.json, photo pixels) instead of detecting them.")
_box = click.option("--box", default=None, metavar="X0,Y0,X1,Y1",
                    help="Face box in photo pixels (skips face detection).")
_face_index = click.option("--face-index", type=click.IntRange(min=0), default=None,
                           help="Which face (0 = largest) when there are several.")
_backend = click.option("--backend", type=click.Choice(LANDMARK_BACKENDS), default="auto", show_default=True,
                        help="Landmark predictor.")


def _margin_option(help_text):
    return click.option("--margin", type=click.FloatRange(min=0), default=None,
                        help=f"{help_text}, in inter-ocular distances  [default: 0.25]")


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
              help="Write the photo with landmarks (yellow), FFHQ quad (green) and mask outline (red) drawn on it.")
@click.option("--region", type=click.Choice(["segment", "landmarks"]), default="segment", show_default=True,
              help="Which mask region --debug outlines (as `project --region`).")
def align_command(photo, output, size, landmarks_file, box, face_index, backend, save_landmarks, debug_path, region):
    """Crop PHOTO to an FFHQ-aligned face, exactly like the FFHQ dataset."""
    from ..face.frontend import align_photo, debug_overlay, face_region, parse_box
    from ..images import ensure_not_input, save_image

    protect = [photo, landmarks_file]
    outputs = [p for p in (output, save_landmarks, debug_path) if p is not None]
    for p in outputs:
        ensure_not_input(p, protect)
    if len({str(p.resolve()) for p in outputs}) != len(outputs):
        raise UnmaskError(f"{output}: -o, --save-landmarks and --debug must be different files")
    if save_landmarks is not None and save_landmarks.suffix.lower() != ".npy":
        raise UnmaskError(f"{save_landmarks}: --save-landmarks writes NumPy .npy files")
    loaded, points, face = align_photo(photo, size, landmarks_file=landmarks_file, box=parse_box(box),
                                       face_index=face_index, backend=backend)
    save_image(output, face.image, protect=protect)
    click.echo(f"aligned {size}x{size} face -> {output}")
    if save_landmarks is not None:
        _atomic_npy(save_landmarks, points)
        click.echo(f"landmarks -> {save_landmarks}")
    if debug_path is not None:
        mask, _ = face_region(loaded.pixels, points, region)
        save_image(debug_path, debug_overlay(loaded.pixels, points, face.transform.quad, mask), protect=protect)
        click.echo(f"debug overlay -> {debug_path}")


def _atomic_npy(path: Path, array) -> None:
    import numpy as np

    from ..atomic import atomic_file

    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array, dtype=np.float64))


_region = click.option("--region", type=click.Choice(["segment", "landmarks"]), default="segment",
                       show_default=True,
                       help="The face mask segmented by the shipped network, or the polygon from the 68 landmarks.")


@click.command("mask")
@_photo
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Mask PNG to write (single channel, 255 = masked, size of the upright photo).")
@click.option("--overlay", "overlay_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the photo with the region tinted and outlined [default: OUTPUT's name + _overlay].")
@_region
@_margin_option("Landmark region: reach beyond the jaw")
@_landmarks
@_box
@_face_index
@_backend
def mask_command(photo, output, overlay_path, region, margin, landmarks_file, box, face_index, backend):
    """Write the face-mask region of PHOTO as a black/white PNG, and an overlay to check it by eye.

    The PNG has the size and orientation of the photo as viewers show it (EXIF
    rotation applied), so it can be edited over the photo and passed back with
    --mask.
    """
    from ..face.frontend import mask_photo, parse_box, region_overlay
    from ..images import ensure_not_input, save_image

    if output.suffix.lower() not in (".png", ".tif", ".tiff", ".bmp"):
        raise UnmaskError(f"{output}: write masks as a lossless image (.png); JPEG would blur the edges")
    overlay_path = overlay_path or output.with_name(output.stem + "_overlay.png")
    for p in (output, overlay_path):
        ensure_not_input(p, [photo, landmarks_file])
    if overlay_path.resolve() == output.resolve():
        raise UnmaskError(f"{output}: the mask and its --overlay must be different files")
    loaded, _, m, source = mask_photo(photo, margin, landmarks_file=landmarks_file, box=parse_box(box),
                                      face_index=face_index, backend=backend, region=region)
    save_image(output, m, protect=[photo, landmarks_file])
    save_image(overlay_path, region_overlay(loaded.pixels, m), protect=[photo, landmarks_file])
    h, w = m.shape
    click.echo(f"mask {w}x{h}, {m.mean():.1%} masked ({source}) -> {output}; overlay -> {overlay_path}")


@click.command("eval-masks")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per photo and region.")
@_backend
@click.option("--region", type=click.Choice(["both", "segment", "landmarks"]), default="both", show_default=True,
              help="Which region(s) to measure; 'both' side by side on the same detections.")
@_margin_option("Landmark margin")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items (sorted).")
@click.option("--eyes/--no-eyes", default=True, show_default=True,
              help="Also find landmarks on each clean photo to check the region stays off the eyes.")
def eval_masks_command(folder, csv_path, backend, region, margin, limit, eyes):
    """Detection rate, coverage and overreach of the mask regions over FOLDER.

    FOLDER holds pairs (any folders with masked.jpg + gt_mask.png [+ clean.*],
    e.g. <source>/<id>/) or is a folder of masked photos (detection rate only).
    """
    from ..evaluation.masks import REGIONS, evaluate_regions, format_reports, write_csv
    from ..face.mask import DEFAULT_MARGIN

    regions = REGIONS if region == "both" else (region,)
    reports = evaluate_regions(folder, regions, backend=backend,
                               margin=DEFAULT_MARGIN if margin is None else margin, limit=limit, eyes=eyes)
    click.echo(format_reports(reports))
    if csv_path is not None:
        write_csv(list(reports.values()), csv_path)
        click.echo(f"per-photo results -> {csv_path}")
