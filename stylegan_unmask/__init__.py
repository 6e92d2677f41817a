"""stylegan-unmask: show the face beneath a face mask.

Data flow (one module per stage):
detect -> landmarks -> align -> mask -> project -> blend -> paste back.
Heavy dependencies (torch, OpenCV, dlib) are imported by the stage modules,
not here, so ``import stylegan_unmask`` stays cheap.
"""

__version__ = "0.1.0"
