"""Fill methods: what fills the masked region of a photo. A small registry, so others can join.

Every method gets the same :class:`FillInput`: the masked photo, the region
to fill (our automatic mask warped into the photo, identical for every
method) and the prepared face (aligned image, aligned mask, projection
target) for methods that work in aligned space. It returns the whole photo,
original size, uint8 RGB.

Adding a method (e.g. a learned inpainter)::

    from stylegan_unmask.evaluation.methods import FillMethod, register_method

    @register_method("lama", label="LaMa")
    class LamaFill(FillMethod):
        def fill_one(self, item):
            return my_inpaint(item.photo, item.region)

and run ``stylegan-unmask eval-unmask DIR --methods ours,lama,telea``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Type, Union

import numpy as np

from ..errors import UnmaskError
from ..pipeline import finish_samples, network_source, project_faces, run_settings


@dataclass
class FillInput:
    """One photo to fill."""

    key: str
    photo: np.ndarray  # HxWx3 uint8, the masked photo
    region: np.ndarray  # HxW bool, True = fill here (our automatic mask in the photo)
    face: object = None  # pipeline.PreparedFace of the photo


@dataclass
class Completion:
    """One of several fills a method proposes for a photo (``ours`` with ``--samples``)."""

    image: np.ndarray  # HxWx3 uint8, like FillOutput.image
    sample: int  # which start it was optimised from (0: the usual one, that of a single projection)
    final_loss: float  # the loss on the visible face, what ranks the completions


@dataclass
class FillOutput:
    image: np.ndarray  # HxWx3 uint8, the photo with the region filled
    seconds: float
    info: Dict[str, object] = field(default_factory=dict)
    # With several completions: all of them, best first by visible loss; ``image`` is the first one's.
    completions: List[Completion] = field(default_factory=list)


@dataclass
class MethodContext:
    """What a method may need: the generator and projection settings (ours), the device."""

    G: object = None
    config: object = None  # projector.ProjectionConfig
    device: object = None
    feather_px: Optional[float] = None
    inpaint_radius: float = 3.0
    samples: int = 1  # ours: completions per photo (project --samples)


class FillMethod:
    """Base class. Override :meth:`fill_one` (per photo) or :meth:`fill_batch` (several photos at once)."""

    name: str = ""
    label: str = ""
    description: str = ""

    def __init__(self, context: MethodContext):
        self.context = context

    def settings(self) -> Dict[str, object]:
        """What this method's results depend on (a result is recomputed when it changes)."""
        return {}

    def fill_one(self, item: FillInput) -> np.ndarray:
        raise NotImplementedError

    def fill_batch(self, items: Sequence[FillInput]) -> List[Union[FillOutput, Exception]]:
        """One output (or the exception that photo raised) per input, in order."""
        out: List[Union[FillOutput, Exception]] = []
        for item in items:
            t0 = time.perf_counter()
            try:
                image = _check_output(self.fill_one(item), item, self.name)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - reported per photo
                out.append(exc)
                continue
            out.append(FillOutput(image, time.perf_counter() - t0))
        return out


_REGISTRY: Dict[str, Type[FillMethod]] = {}


def register_method(name: str, label: Optional[str] = None, description: str = "") -> Callable:
    """Class decorator adding a :class:`FillMethod` subclass to the registry under ``name``."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"method name {name!r}: use letters, digits, '-' and '_' (it names files)")

    def deco(cls: Type[FillMethod]) -> Type[FillMethod]:
        cls.name = name
        cls.label = label or name
        cls.description = description or cls.description
        _REGISTRY[name] = cls
        return cls

    return deco


def available_methods() -> List[str]:
    return list(_REGISTRY)


def method_class(name: str) -> Type[FillMethod]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnmaskError(f"unknown fill method {name!r}; available: {', '.join(_REGISTRY)}") from None


def parse_methods(text: Union[str, Sequence[str]]) -> List[str]:
    """'ours,telea' -> ['ours', 'telea'] (checked, duplicates dropped, order kept)."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise UnmaskError("--methods: name at least one method")
    out: List[str] = []
    for n in names:
        method_class(n)
        if n not in out:
            out.append(n)
    return out


def build_methods(names: Sequence[str], context: MethodContext) -> List[FillMethod]:
    return [method_class(n)(context) for n in names]


def _check_output(image, item: FillInput, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.shape != item.photo.shape or a.dtype != np.uint8:
        raise UnmaskError(f"method {name} returned {a.dtype} {a.shape}, expected uint8 {item.photo.shape}")
    return a


# ----------------------------------------------------------------------------- the methods


@register_method("ours", label="ours", description="masked W+ projection into the StyleGAN2, Poisson blend, "
                                                   "paste back (the real pipeline)")
class OursFill(FillMethod):
    """The pipeline's projection stage for a batch of prepared faces (one projector call), then blend + paste."""

    def settings(self) -> Dict[str, object]:
        c = self.context
        return run_settings(network_source(c.G), c.config, feather_px=c.feather_px, samples=int(c.samples))

    def fill_batch(self, items: Sequence[FillInput]) -> List[Union[FillOutput, Exception]]:
        c = self.context
        if c.G is None or c.config is None:
            raise UnmaskError("method 'ours' needs a network (--network)")
        faces = [it.face for it in items]
        t0 = time.perf_counter()
        try:
            projections, _ = project_faces(c.G, faces, c.config, device=c.device, progress=False,
                                           samples=c.samples)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001
            return [exc for _ in items]
        share = (time.perf_counter() - t0) / len(items)
        out: List[Union[FillOutput, Exception]] = []
        k = int(c.samples)
        for j, (item, face) in enumerate(zip(items, faces)):
            t1 = time.perf_counter()
            try:
                res = finish_samples(face, projections[j * k:(j + 1) * k], settings=self.settings(),
                                     source=network_source(c.G), feather_px=c.feather_px)
                image = _check_output(res.unmasked, item, self.name)
                completions = [Completion(_check_output(r.unmasked, item, self.name), int(r.projection.sample),
                                          float(r.projection.final_loss)) for r in res.completions]
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
                continue
            proj = res.projection
            out.append(FillOutput(image, share + time.perf_counter() - t1,
                                  {"final_loss": float(proj.final_loss), "psnr_visible": float(proj.psnr)},
                                  completions))
        return out


class _OpenCVInpaint(FillMethod):
    flag: int = 0

    def settings(self) -> Dict[str, object]:
        return {"inpaint_radius": float(self.context.inpaint_radius)}

    def fill_one(self, item: FillInput) -> np.ndarray:
        import cv2

        mask = np.asarray(item.region, bool)
        if not mask.any():
            return item.photo.copy()
        # cv2.inpaint only reads pixels near the region: work on its bounding box plus a margin (same result).
        r = int(np.ceil(self.context.inpaint_radius)) + 8
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        y0, y1 = max(0, ys.min() - r), min(h, ys.max() + r + 1)
        x0, x1 = max(0, xs.min() - r), min(w, xs.max() + r + 1)
        out = item.photo.copy()
        crop = np.ascontiguousarray(out[y0:y1, x0:x1])
        m = mask[y0:y1, x0:x1].astype(np.uint8) * 255
        out[y0:y1, x0:x1] = cv2.inpaint(crop, m, float(self.context.inpaint_radius), self.flag)
        return out


@register_method("telea", label="Telea", description="OpenCV inpainting, Telea's fast marching method (2004)")
class TeleaFill(_OpenCVInpaint):
    @property
    def flag(self):  # noqa: D401
        import cv2

        return cv2.INPAINT_TELEA


@register_method("ns", label="NS", description="OpenCV inpainting, Navier-Stokes (Bertalmio et al. 2001)")
class NavierStokesFill(_OpenCVInpaint):
    @property
    def flag(self):
        import cv2

        return cv2.INPAINT_NS


@register_method("none", label="no change", description="the masked photo itself (the floor)")
class NoChange(FillMethod):
    def fill_one(self, item: FillInput) -> np.ndarray:
        return item.photo.copy()
