"""Training our own face StyleGAN2: dataset preparation, the GAN trainer, metrics.

The stages follow the data flow: ``dataset_tool`` (photos → aligned PNGs in
NVIDIA's dataset layout) → ``dataset`` (those PNGs → tensors) → ``augment``
(DiffAugment) → ``discriminator`` (projected VGG16 discriminator) → ``loss``
(non-saturating logistic + lazy R1) → ``loop`` (the training loop, EMA,
snapshots, resume; written in our network format, ``checkpoints/ours.py``) →
``metrics`` (Fréchet distance / KID on VGG16 features, face-detection share).
"""
