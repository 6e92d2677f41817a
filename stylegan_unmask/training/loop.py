"""The training loop: our Generator against the projected VGG16 discriminator.

One iteration = a D step (non-saturating logistic, DiffAugment on both sides,
lazy R1 every ``r1_interval`` steps) and a G step (style mixing), followed by
the G-EMA update. Mixed precision: bf16 autocast on CPUs with native bf16, fp16
autocast + loss scaling on CUDA. Everything random draws from seeded
``torch.Generator`` objects whose states are saved, so a resumed run continues
the same stream. Snapshots are written atomically every ``snap_minutes``
(and on Ctrl-C / SIGTERM): ``training-state.pt`` (everything, for
``--resume``), ``network-snapshot-KKKKKK.pt`` (G_ema only: what ``--network``
takes), ``fakesKKKKKK.png`` and a line of ``metrics.jsonl``.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..errors import UnmaskError
from ..checkpoints import ours as snap
from .augment import diff_augment, gaussian_blur
from .dataset import ImageDataset, load_dataset
from .discriminator import ProjectedDiscriminator
from .loss import hinge_discriminator_loss, hinge_generator_loss, r1_penalty

STATE_FILE = "training-state.pt"


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in every snapshot (``--resume`` checks it)."""

    data: str
    outdir: str
    kimg: float = 200.0
    batch: int = 16
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 2
    channel_base: int = 4096
    channel_max: int = 192
    glr: float = 0.002
    dlr: float = 0.002
    r1_gamma: float = 0.0
    r1_interval: int = 16
    ema_kimg: Optional[float] = None  # None: batch * 10 / 32, as Projected GAN
    ema_rampup: Optional[float] = 0.05
    style_mixing: float = 0.0
    augment: str = "color,translation,cutout"
    mirror: bool = True
    backbone: str = "lite0"
    d_input: int = 128
    channels_last: bool = True
    separable_heads: bool = True
    blur_sigma: float = 2.0
    blur_kimg: float = 20.0
    share_fakes: bool = True
    lean: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    snap_minutes: float = 5.0
    keep_snapshots: int = 0          # 0 = keep every network snapshot (they are small)
    metrics_samples: int = 256
    limit: Optional[int] = None
    desc: str = ""

    #: Settings that may change when resuming (the rest must match).
    RESUMABLE = ("kimg", "outdir", "snap_minutes", "keep_snapshots", "metrics_samples", "device", "desc")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnmaskError("--device cuda: no CUDA GPU is available (use --device cpu)")
    return dev


def resolve_precision(name: str, device: torch.device) -> Tuple[Optional[torch.dtype], Optional[torch.dtype]]:
    """(G's autocast dtype, D's autocast dtype), None meaning fp32.

    ``auto``: fp16 for both on CUDA; on CPUs ``mixed`` where the CPU has native bf16, else fp32.
    ``mixed`` runs only G in reduced precision (bf16 on CPUs, fp16 on CUDA): on this torch build
    the CPU backend runs grouped and depthwise convolutions - the EfficientNet, the separable
    heads, DiffAugment and the blur - through a slow reference kernel in bf16, while G's dense
    convolutions gain more than its FIR filters lose (docs/training.md has the measurements).
    """
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    if name == "auto":
        if device.type == "cuda":
            return torch.float16, torch.float16
        name = "mixed" if cpu_has_native_bf16() else "fp32"
    if name == "fp32":
        return None, None
    if name == "mixed":
        return half, None
    if name == "bf16":
        return torch.bfloat16, torch.bfloat16
    if name == "fp16":
        if device.type != "cuda":
            raise UnmaskError("--precision fp16 is for CUDA; on a CPU use bf16, mixed or fp32")
        return torch.float16, torch.float16
    raise UnmaskError(f"unknown precision {name!r}; choose auto, fp32, mixed, bf16 or fp16")


def _dtype_name(dtype: Optional[torch.dtype]) -> str:
    return str(dtype).replace("torch.", "") if dtype else "float32"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 (or AMX): without it bf16 is emulated and slower than fp32."""
    is_supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(is_supported and is_supported())


def build_generator(cfg: TrainConfig, resolution: int):
    from ..networks.stylegan2 import Generator

    return Generator(
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=resolution, img_channels=3,
        mapping_kwargs={"num_layers": cfg.map_layers},
        synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max},
    )


# ----------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """torchrun sets WORLD_SIZE/RANK: one process per GPU (or per CPU share), gradients averaged."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def all_reduce_grads(params: List[torch.nn.Parameter], d: Dist) -> None:
    if d.world <= 1:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


# ----------------------------------------------------------------------------- run folders
def new_run_dir(outdir: Path, desc: str) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in outdir.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
    run = outdir / f"{(max(ids) + 1) if ids else 0:05d}-{desc}"
    run.mkdir()
    return run


def find_resume(resume: str, outdir: Path) -> Path:
    """``latest`` → the newest run under outdir with a training state; a run folder or state file → itself."""
    if resume == "latest":
        runs = sorted((p for p in outdir.glob("*") if (p / STATE_FILE).exists()),
                      key=lambda p: (p / STATE_FILE).stat().st_mtime)
        if not runs:
            raise UnmaskError(f"--resume latest: no run with a {STATE_FILE} under {outdir}")
        return runs[-1] / STATE_FILE
    p = Path(resume)
    if p.is_dir():
        p = p / STATE_FILE
    if not p.exists():
        raise UnmaskError(f"--resume {resume}: no such training state")
    return p


# ----------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig, resume: Optional[str] = None, progress: bool = True):
        self.device = resolve_device(cfg.device)
        self.dist = init_distributed(self.device)
        self.progress = progress and self.dist.main
        state = None
        if resume:
            state_path = find_resume(resume, Path(cfg.outdir))
            state = snap.load(state_path)
            if "D" not in state:
                raise UnmaskError(f"{state_path}: a network file, not a training state (no D / optimiser states)")
            old = dict(state["training"]["config"])
            changed = {k: (old.get(k), v) for k, v in asdict(cfg).items()
                       if k not in TrainConfig.RESUMABLE and old.get(k) != v and k in old}
            if changed:
                raise UnmaskError(f"--resume {state_path.parent}: settings differ from the run's {changed}")
            cfg = TrainConfig(**{**old, **{k: getattr(cfg, k) for k in TrainConfig.RESUMABLE}})
            self.run_dir = state_path.parent
        self.cfg = cfg
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.g_dtype, self.dtype = resolve_precision(cfg.precision, self.device)
        self.data: ImageDataset = load_dataset(cfg.data, limit=cfg.limit, progress=self.progress)
        res = self.data.resolution
        self.G = build_generator(cfg, res).to(self.device).train().requires_grad_(True)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D = ProjectedDiscriminator(cfg.backbone, cfg.d_input, cfg.separable_heads,
                                        channels_last=cfg.channels_last).to(self.device).train()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.glr, betas=(0.0, 0.99), eps=1e-8)
        # Lazy R1 (off by default, as in Projected GAN): the D moments are rescaled as in StyleGAN2.
        c = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_gamma > 0 else 1.0
        self.opt_D = torch.optim.Adam(self.D.trainable_parameters(), lr=cfg.dlr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
        self.scaler = torch.amp.GradScaler("cuda") if torch.float16 in (self.g_dtype, self.dtype) else None
        self.rng = torch.Generator().manual_seed(cfg.seed * 1000 + self.dist.rank)
        self.nimg = 0
        self.iteration = 0
        self.seconds = 0.0
        self.grid_z = torch.randn([32, cfg.z_dim], generator=torch.Generator().manual_seed(cfg.seed + 123))
        if state is not None:
            self._load_state(state)
        elif self.dist.main:
                self.run_dir = new_run_dir(Path(cfg.outdir), cfg.desc or f"{Path(cfg.data).stem}-{res}px")
        if self.dist.world > 1:  # every rank starts from rank 0's weights and run folder
            import torch.distributed as dist

            heads = list(self.D.heads.state_dict().values())
            for t in list(self.G.state_dict().values()) + heads:
                dist.broadcast(t, 0)
            self.G_ema.load_state_dict(self.G.state_dict())
            holder = [str(getattr(self, "run_dir", ""))]
            dist.broadcast_object_list(holder, 0)
            self.run_dir = Path(holder[0])

    # ------------------------------------------------------------------ pieces
    def _autocast(self, dtype="D"):
        dtype = self.dtype if dtype == "D" else dtype
        if dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=dtype)

    def _z(self, n):
        return torch.randn([n, self.cfg.z_dim], generator=self.rng).to(self.device)

    def _reals(self, n):
        idx = torch.randint(0, len(self.data), [n], generator=self.rng)
        x = self.data.batch(idx)
        if self.cfg.mirror:
            flip = torch.rand([n], generator=self.rng) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return x.to(self.device)

    def _d_input(self, x):
        """What D sees: DiffAugment, then (early in training) a fading blur."""
        policy = [p for p in self.cfg.augment.split(",") if p]
        x = diff_augment(x, policy, generator=self.rng) if policy else x
        return gaussian_blur(x, self.blur_sigma())

    def blur_sigma(self) -> float:
        cfg = self.cfg
        if cfg.blur_kimg <= 0:
            return 0.0
        return max(1 - self.nimg / (cfg.blur_kimg * 1000), 0) * cfg.blur_sigma

    def _generate(self, n):
        G = self.G
        ws = G.mapping(self._z(n), None)
        if self.cfg.style_mixing > 0:
            cutoff = int(torch.randint(1, G.num_ws, [1], generator=self.rng))
            if float(torch.rand([1], generator=self.rng)) >= self.cfg.style_mixing:
                cutoff = G.num_ws
            if cutoff < G.num_ws:
                ws2 = G.mapping(self._z(n), None, update_emas=False)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        with self._autocast(self.g_dtype):
            img = G.synthesis(ws, noise_mode="random", lean=self.cfg.lean)
        return img.to(self.dtype or torch.float32)

    def _step(self, loss, params, opt):
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        all_reduce_grads(params, self.dist)
        for p in params:
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def train_step(self) -> dict:
        """One D step and one G step. With ``share_fakes`` both judge the same generated batch: the
        frozen feature network runs once on it (its features do not change when D's heads do)."""
        cfg, n = self.cfg, self.cfg.batch // self.dist.world
        with self._autocast():
            fake = self._generate(n) if cfg.share_fakes else None
            fake_feats = self.D.features(self._d_input(fake)) if cfg.share_fakes else None
            with torch.no_grad():
                real_feats = self.D.features(self._d_input(self._reals(n)))
                if fake_feats is None:
                    fake_feats_d = self.D.features(self._d_input(self._generate(n)))
            if fake_feats is not None:
                fake_feats_d = [f.detach() for f in fake_feats]
            real_logits, fake_logits = self.D.judge(real_feats), self.D.judge(fake_feats_d)
            loss_D = hinge_discriminator_loss(real_logits.float(), fake_logits.float())
        stats = {"real": float(real_logits.detach().float().mean()), "fake": float(fake_logits.detach().float().mean())}
        if cfg.r1_gamma > 0 and self.iteration % cfg.r1_interval == 0:
            r1 = r1_penalty(self.D, self._d_input(self._reals(n)))
            loss_D = loss_D + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
            stats["r1"] = float(r1.detach())
        self._step(loss_D, None, self.opt_D)
        stats["loss_D"] = float(loss_D.detach())
        self.D.heads.requires_grad_(False)  # the G step moves G only
        with self._autocast():
            if fake_feats is None:
                fake_feats = self.D.features(self._d_input(self._generate(n)))
            loss_G = hinge_generator_loss(self.D.judge(fake_feats).float())
        self._step(loss_G, None, self.opt_G)
        self.D.heads.requires_grad_(True)
        stats["loss_G"] = float(loss_G.detach())
        # EMA of G.
        self.nimg += cfg.batch
        self.iteration += 1
        ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else cfg.batch * 10 / 32) * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        return stats

    # ------------------------------------------------------------------ snapshots
    def record(self) -> dict:
        return {"config": asdict(self.cfg), "kimg": self.nimg / 1000, "nimg": self.nimg,
                "iteration": self.iteration, "seconds": self.seconds,
                "dataset": {"path": str(self.data.path), "images": len(self.data),
                            "crop_scale": self.data.crop_scale, "record": {k: v for k, v in self.data.record.items()
                                                                         if k != "files"}},
                "precision": _dtype_name(self.dtype), "g_precision": _dtype_name(self.g_dtype),
                "device": str(self.device), "torch": torch.__version__}

    def save_snapshot(self, metrics: bool = True) -> Path:
        kimg = int(self.nimg // 1000)
        rec = snap.network_record(self.G_ema, self.G.init_kwargs, self.data.crop_scale, self.record())
        net_path = snap.save(self.run_dir / f"network-snapshot-{kimg:06d}.pt", rec)
        state = dict(rec)
        state.update(G=self.G.state_dict(), D=self.D.heads.state_dict(), opt_G=self.opt_G.state_dict(),
                     opt_D=self.opt_D.state_dict(), rng=self.rng.get_state(), torch_rng=torch.get_rng_state(),
                     scaler=self.scaler.state_dict() if self.scaler is not None else {})
        snap.save(self.run_dir / STATE_FILE, state)
        self._prune()
        from .report import save_sample_grid

        save_sample_grid(self.G_ema, self.grid_z, self.run_dir / f"fakes{kimg:06d}.png", device=self.device)
        line = {"kimg": self.nimg / 1000, "seconds": round(self.seconds, 1), "network": net_path.name}
        if metrics and self.cfg.metrics_samples > 0:
            from .metrics import quick_metrics

            line.update(quick_metrics(self.G_ema, self.data, self.cfg.metrics_samples, device=self.device,
                                      seed=self.cfg.seed))
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        from .report import plot_metrics

        plot_metrics(self.run_dir)
        return net_path

    def _prune(self):
        keep = self.cfg.keep_snapshots
        if keep <= 0:
            return
        nets = sorted(self.run_dir.glob("network-snapshot-*.pt"))
        for p in nets[:-keep]:
            p.unlink(missing_ok=True)

    def _load_state(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.heads.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        tr = state["training"]
        self.nimg, self.iteration, self.seconds = int(tr["nimg"]), int(tr["iteration"]), float(tr["seconds"])

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        from tqdm import tqdm

        cfg = self.cfg
        total = int(cfg.kimg * 1000)
        stop = {"flag": False}

        def on_signal(signum, frame):  # finish the iteration, snapshot, exit
            stop["flag"] = True
        old = signal.signal(signal.SIGTERM, on_signal) if self.dist.main else None
        if self.dist.main:
            atomic_write_text(self.run_dir / "training_options.json", json.dumps(asdict(cfg), indent=2))
        bar = tqdm(total=total / 1000, initial=self.nimg / 1000, unit="kimg", desc="train", disable=not self.progress,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.0f} kimg [{elapsed}<{remaining}{postfix}]")
        last_snap = time.time()
        t_start, n_start = time.time(), self.nimg
        last = None
        try:
            while self.nimg < total and not stop["flag"]:
                t0 = time.time()
                stats = self.train_step()
                self.seconds += time.time() - t0
                bar.update(cfg.batch / 1000)
                rate = (self.nimg - n_start) / max(time.time() - t_start, 1e-9)
                bar.set_postfix_str(f"{rate:.1f} img/s, G {stats['loss_G']:.3f}, D {stats['loss_D']:.3f}")
                if not all(math.isfinite(v) for v in stats.values()):
                    raise UnmaskError(f"training diverged at {self.nimg / 1000:.1f} kimg (loss {stats}); resume from "
                                      f"the last snapshot with a lower --glr/--dlr")
                if self.dist.main and time.time() - last_snap > cfg.snap_minutes * 60:
                    last = self.save_snapshot()
                    last_snap = time.time()
        except KeyboardInterrupt:
            if self.dist.main:
                bar.write("interrupted: writing a snapshot before exiting")
        finally:
            bar.close()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        if self.dist.main:
            last = self.save_snapshot()
        return last


def train(cfg: TrainConfig, resume: Optional[str] = None, progress: bool = True) -> Path:
    """Train (or continue) a run; returns the last network snapshot."""
    return Trainer(cfg, resume=resume, progress=progress).run()
