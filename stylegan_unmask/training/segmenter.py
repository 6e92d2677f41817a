"""Training the face-mask segmenter's decoder (``stylegan-unmask train-segmenter``).

The encoder (ImageNet EfficientNet-lite0) stays frozen, so its features are
computed once for the whole precomputed data set (``segmenter_data``) and
every epoch only runs the small decoder: a CPU trains it in minutes. Loss:
binary cross-entropy plus soft Dice, both over the pixels whose answer is
known (weight 1). The last ``val`` samples (distinct faces) are held out.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from ..face.segment import MODEL_FILE, build_decoder, encode, encoder_input

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class SegmenterTrainConfig:
    epochs: int = 12
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val: int = 600
    seed: int = 0
    threads: int = 1
    dice_weight: float = 1.0


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_iou: float
    seconds: float


def precompute_features(frames: np.ndarray, chunk: int = 64, progress: bool = True) -> List:
    """The frozen encoder's skip features for every frame, fp16 (computed once)."""
    import torch
    from tqdm import tqdm

    from ..perceptual.efficientnet_lite import EfficientNetLite0

    enc = EfficientNetLite0()
    out: List[List] = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(frames), chunk), desc="encoder features", disable=not progress):
            feats = encode(enc, encoder_input(frames[i:i + chunk]))
            out.append([f.half() for f in feats])
    return [torch.cat([o[k] for o in out]) for k in range(len(out[0]))]


def segmentation_loss(logits, label, weight, dice_weight: float = 1.0):
    """Weighted BCE + soft Dice (per sample, averaged), both only where weight > 0."""
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, label, weight=weight, reduction="sum") / weight.sum().clamp(min=1)
    prob = logits.sigmoid() * weight
    inter = (prob * label).flatten(1).sum(1)
    denom = (prob + label * weight).flatten(1).sum(1)
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return bce + dice_weight * dice.mean()


def _batch(feats, frames, labels, weights, idx):
    import torch

    f = [x[idx].float() for x in feats]
    rgb = encoder_input(frames[idx.numpy()])
    lab = torch.from_numpy(labels[idx.numpy()]).float()[:, None]
    wt = torch.from_numpy(weights[idx.numpy()]).float()[:, None]
    return f, rgb, lab, wt


def train_segmenter(data: PathLike, out: PathLike, config: Optional[SegmenterTrainConfig] = None,
                    progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train the decoder on ``data`` (an npz from ``segmenter_data.build_dataset``), save it to ``out``."""
    import torch

    cfg = config or SegmenterTrainConfig()
    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    d = np.load(data, allow_pickle=False)
    frames, labels, weights = d["frames"], d["labels"], d["weights"]
    n = len(frames)
    nval = min(int(cfg.val), n // 5)
    t0 = time.perf_counter()
    feats = precompute_features(frames, progress=progress)
    log(f"features of {n} frames in {time.perf_counter() - t0:.0f} s")
    dec = build_decoder()
    opt = torch.optim.AdamW(dec.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_idx = torch.arange(n - nval)
    steps = cfg.epochs * math.ceil(len(train_idx) / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: List[EpochLog] = []
    for epoch in range(cfg.epochs):
        t = time.perf_counter()
        dec.train()
        total = 0.0
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), cfg.batch):
            f, rgb, lab, wt = _batch(feats, frames, labels, weights, perm[i:i + cfg.batch])
            loss = segmentation_loss(dec(f, rgb), lab, wt, cfg.dice_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(lab)
        vl, viou = evaluate_decoder(dec, feats, frames, labels, weights, torch.arange(n - nval, n), cfg)
        history.append(EpochLog(epoch + 1, total / len(perm), vl, viou, time.perf_counter() - t))
        log(f"epoch {epoch + 1}/{cfg.epochs}: train {total / len(perm):.4f}  val {vl:.4f}  val IoU {viou:.4f}  "
            f"({time.perf_counter() - t:.0f} s)")
        # saved every epoch, so a long run can be looked at (or stopped) before it ends
        path = save_decoder(dec, out, {"config": asdict(cfg), "history": [asdict(h) for h in history],
                                       "data": Path(data).name, "samples": n})
    return path


def evaluate_decoder(dec, feats, frames, labels, weights, idx, cfg) -> tuple:
    """(loss, IoU at 0.5 over known pixels) on the held-out samples."""
    import torch

    dec.eval()
    total, inter, union = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for i in range(0, len(idx), 64):
            f, rgb, lab, wt = _batch(feats, frames, labels, weights, idx[i:i + 64])
            logits = dec(f, rgb)
            total += float(segmentation_loss(logits, lab, wt, cfg.dice_weight)) * len(lab)
            pred = (logits > 0) & (wt > 0)
            truth = (lab > 0) & (wt > 0)
            inter += float((pred & truth).sum())
            union += float((pred | truth).sum())
    return total / max(1, len(idx)), inter / max(1.0, union)


def save_decoder(dec, out: PathLike, meta: Dict) -> Path:
    """The decoder's weights in fp16 (BatchNorm counters as they are) + meta, atomically."""
    import torch

    from ..atomic import atomic_file

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in dec.state_dict().items()}
    out = Path(out)
    if out.is_dir() or out.suffix == "":
        out = out / MODEL_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        torch.save({"decoder": state, "meta": meta}, tmp)
    return out
