"""The StyleGAN2 generator against outputs of NVIDIA's and rosinality's official code.

Goldens (../shared/fixtures, see its README): images and gradients computed by
the official implementations from the same checkpoint files that are loaded
here through ``load_generator``. Tolerances: 1e-4 absolute for values
(relative 1e-5 for the clamp case whose values reach ~800), 1e-3 relative for
gradients - what thread-count changes alone produce in the reference runs.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from stylegan_unmask.networks.stylegan2 import Generator, modulated_conv2d
from torch_utils.ops import upfirdn2d
from torch_utils.ops.conv2d_resample import conv2d_resample

ATOL = 1e-4
GRAD_RTOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _load(path, key="G_ema"):
    from stylegan_unmask.checkpoints import load_generator

    return load_generator(str(path), device="cpu", key=key)


@pytest.fixture(scope="module")
def G_ada(ada_pkl):
    return _load(ada_pkl)


@pytest.fixture(scope="module")
def G_sg3(sg3_pkl):
    return _load(sg3_pkl)


def max_abs(a: torch.Tensor, ref: np.ndarray) -> float:
    a = a.detach().cpu().numpy()
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float(np.abs(a - ref).max())


def rel_err(a: torch.Tensor, ref: np.ndarray) -> float:
    return max_abs(a, ref) / float(np.abs(ref).max())


def synthesis_with_grad(G, wplus: np.ndarray, R: np.ndarray, **kwargs):
    w = torch.tensor(wplus).requires_grad_(True)
    img = G.synthesis(w, noise_mode="const", force_fp32=True, **kwargs)
    (img * torch.tensor(R)).sum().backward()
    return img.detach(), w.grad


# ---------------------------------------------------------------- names, structure, config


def test_names_match_official(G_ada, golden64):
    assert [n for n, _ in G_ada.named_parameters()] == list(golden64["param_names"])
    assert [n for n, _ in G_ada.named_buffers()] == list(golden64["buffer_names"])
    assert list(G_ada.state_dict()) == list(golden64["state_names"])
    assert G_ada.num_ws == int(golden64["num_ws"]) == 10
    # A freshly built network (no checkpoint) has the same layout.
    fresh = Generator(**G_ada.init_kwargs)
    assert list(fresh.state_dict()) == list(golden64["state_names"])
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in G_ada.state_dict().items()}


def test_config_styles_take_their_own_defaults(G_ada, G_sg3):
    # ada pickle: nested synthesis_kwargs with explicit fp16/clamp; sg3 pickle: flat, values omitted = defaults.
    for G in (G_ada, G_sg3):
        assert G.synthesis.num_fp16_res == 4
        assert [b.use_fp16 for b in G.synthesis.blocks()] == [False, True, True, True, True]
        assert G.synthesis.b8.conv0.conv_clamp == 256 and G.synthesis.b64.torgb.conv_clamp == 256
    assert G_ada.mapping.w_avg_beta == 0.995 and G_sg3.mapping.w_avg_beta == 0.998

    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)
    ada = Generator(**base, synthesis_kwargs=dict(channel_base=64))
    sg3 = Generator(**base, channel_base=64, fused_modconv_default="inference_only")
    assert ada.config_defaults == "stylegan2-ada" and sg3.config_defaults == "stylegan3"
    assert ada.synthesis.num_fp16_res == 0 and ada.synthesis.b16.conv1.conv_clamp is None
    assert sg3.synthesis.num_fp16_res == 4 and sg3.synthesis.b16.conv1.conv_clamp == 256
    explicit = Generator(**base, synthesis_kwargs=dict(channel_base=64), config_defaults="stylegan3")
    assert explicit.synthesis.b16.conv1.conv_clamp == 256
    # init_kwargs are fully resolved: rebuilding gives the same configuration.
    again = Generator(**sg3.init_kwargs)
    assert again.synthesis.b16.conv1.conv_clamp == 256 and again.mapping.w_avg_beta == 0.998


def test_unknown_or_mixed_config_is_rejected():
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3)
    with pytest.raises(TypeError, match="channel_bse"):
        Generator(**base, channel_bse=64)
    with pytest.raises(TypeError, match="num_layerz"):
        Generator(**base, mapping_kwargs=dict(num_layerz=2))
    with pytest.raises(TypeError, match="not both"):
        Generator(**base, synthesis_kwargs=dict(channel_base=64), channel_max=8)
    with pytest.raises(ValueError, match="power of two"):
        Generator(**{**base, "img_resolution": 48})
    with pytest.raises(ValueError, match="architecture"):
        Generator(**base, synthesis_kwargs=dict(architecture="stylegan9"))
    with pytest.raises(ValueError, match="channels_dict"):
        Generator(**base, synthesis_kwargs=dict(channels_dict={4: 8}))


@pytest.mark.parametrize("log2", range(2, 11))
def test_every_resolution_constructs(log2):
    res = 2 ** log2
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=16 * res, channel_max=4))
    assert G.num_ws == 2 * log2 - 2  # 1 conv at 4x4, 2 per higher resolution, + the last ToRGB
    assert G.synthesis.block_resolutions == [2 ** i for i in range(2, log2 + 1)]
    assert len(G.synthesis.noise_shapes()) == 2 * log2 - 3
    if res <= 64:  # rendering the big ones adds nothing but time
        img = G(torch.randn([2, 8]))
        assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()


# ---------------------------------------------------------------- NVIDIA goldens


@pytest.mark.parametrize("pkl", ["ada", "sg3repo"])
def test_mapping_goldens(pkl, G_ada, G_sg3, golden64):
    G = G_ada if pkl == "ada" else G_sg3
    z = torch.tensor(golden64["z"])
    assert max_abs(G.mapping(z, None), golden64["ws_psi1"]) < ATOL
    assert max_abs(G.mapping(z, None, truncation_psi=0.7), golden64["ws_psi07"]) < ATOL
    ws = G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=4)
    assert max_abs(ws, golden64["ws_psi07_cutoff4"]) < ATOL


@pytest.mark.parametrize("key, kwargs", [
    ("img_const_psi1", dict(noise_mode="const")),
    ("img_const_psi07", dict(noise_mode="const", truncation_psi=0.7)),
    ("img_none_psi1", dict(noise_mode="none")),
])
def test_image_goldens(G_ada, golden64, key, kwargs):
    img = G_ada(torch.tensor(golden64["z"]), None, force_fp32=True, **kwargs)
    assert max_abs(img, golden64[key]) < ATOL


def test_sg3repo_pickle_goldens(G_sg3, golden64):
    """Same weights in the stylegan3 repository's format (flat kwargs, omitted defaults)."""
    z = torch.tensor(golden64["z"][:2])
    img = G_sg3(z, None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
    assert max_abs(img, golden64["img_const_psi07"][:2]) < ATOL
    img = G_sg3.synthesis(torch.tensor(golden64["wplus"][:2]), noise_mode="const", force_fp32=True)
    assert max_abs(img, golden64["img_wplus_const"][:2]) < ATOL


@pytest.mark.parametrize("pkl", ["ada", "sg3repo"])
def test_training_copy_G(pkl, ada_pkl, sg3_pkl, golden64):
    G = _load(ada_pkl if pkl == "ada" else sg3_pkl, key="G")
    rows = slice(None) if pkl == "ada" else slice(0, 2)
    img = G(torch.tensor(golden64["z"][rows]), None, noise_mode="const", force_fp32=True)
    assert max_abs(img, golden64["img_const_psi1_from_G"][rows]) < ATOL
    assert max_abs(img, golden64["img_const_psi1"][rows]) > 1  # really a different network


def test_wplus_image_gradient_and_intermediates(G_ada, golden64):
    captured = {}
    hooks = []
    for name, module in G_ada.named_modules():
        if name.endswith(".affine"):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: captured.__setitem__(f"dbg_affine_out.{name}", o.detach())))
        elif name.startswith("synthesis.b") and name.count(".") == 1:
            def save_block(m, i, o, name=name):
                captured[f"dbg_block_x.{name}"] = o[0].detach()
                captured[f"dbg_block_img.{name}"] = o[1].detach()
            hooks.append(module.register_forward_hook(save_block))
    try:
        img, grad = synthesis_with_grad(G_ada, golden64["wplus"], golden64["R"])
    finally:
        for h in hooks:
            h.remove()
    assert max_abs(img, golden64["img_wplus_const"]) < ATOL
    assert rel_err(grad, golden64["grad_wplus"]) < GRAD_RTOL
    dbg_keys = [k for k in golden64 if k.startswith("dbg_")]
    assert len(dbg_keys) == 21
    for key in dbg_keys:
        assert max_abs(captured[key], golden64[key]) < ATOL, key


def test_standard_filter_golden(G_ada, golden64):
    G = copy.deepcopy(G_ada)
    standard = upfirdn2d.setup_filter([1, 3, 3, 1])
    with torch.no_grad():
        for name, buf in G.named_buffers():
            if name.endswith("resample_filter"):
                buf.copy_(standard)
    img = G.synthesis(torch.tensor(golden64["wplus"]), noise_mode="const", force_fp32=True)
    assert max_abs(img, golden64["img_wplus_const_stdfilter"]) < ATOL
    # The fixture's perturbed filters matter (so the orientation checks above really check something).
    assert max_abs(img, golden64["img_wplus_const"]) > 10 * ATOL


def test_clamp_golden(G_ada, golden64):
    G = copy.deepcopy(G_ada)
    with torch.no_grad():
        G.synthesis.b4.const.copy_(torch.tensor(golden64["clamp_b4_const"]))
    img, grad = synthesis_with_grad(G, golden64["wplus"], golden64["R"])
    assert rel_err(img, golden64["img_wplus_clamp_const"]) < 1e-5
    assert rel_err(grad, golden64["grad_wplus_clamp"]) < GRAD_RTOL
    assert img.abs().max() > 256  # image sums of clamped ToRGB outputs exceed the clamp


def test_fused_and_unfused_modconv_agree(G_ada, golden64):
    wplus, R = golden64["wplus"][:2], golden64["R"][:2]
    fused, g_fused = synthesis_with_grad(G_ada, wplus, R, fused_modconv=True)
    plain, g_plain = synthesis_with_grad(G_ada, wplus, R, fused_modconv=False)
    assert (fused - plain).abs().max() < 5e-5
    assert ((g_fused - g_plain).abs().max() / g_fused.abs().max()) < GRAD_RTOL
    # eval uses the fused path by default ('inference_only'), training the other one
    assert not G_ada.training


def test_mixed_precision_only_when_asked(G_ada, golden64):
    z = torch.tensor(golden64["z"][:1])
    ref = golden64["img_const_psi1"][:1]
    default_cpu = G_ada(z, None)  # fp16 blocks stay fp32 on CPU by default
    assert max_abs(default_cpu, ref) < ATOL
    mixed = G_ada(z, None, fp16_on_cpu=True)
    assert mixed.dtype == torch.float32
    err = max_abs(mixed, ref)
    assert 1e-4 < err < 0.1  # really ran in float16, still the same picture
    assert max_abs(G_ada(z, None, fp16_on_cpu=True, force_fp32=True), ref) < ATOL


# ---------------------------------------------------------------- rosinality goldens


def test_rosinality_goldens(rosinality_pt, fixtures_dir):
    gold = dict(np.load(fixtures_dir / "rosinality-golden-64.npz"))
    G = _load(rosinality_pt)
    z = torch.tensor(gold["z"])
    assert G.num_ws == int(gold["n_latent"])
    assert max_abs(G.mapping(z, None)[:, 0], gold["w_z"]) < ATOL
    assert max_abs(G(z, None, noise_mode="const", force_fp32=True), gold["img_z_psi1"]) < ATOL
    assert max_abs(G.mapping(z, None, truncation_psi=0.7), gold["latent_z_psi07"]) < ATOL
    assert max_abs(G(z, None, truncation_psi=0.7, noise_mode="const"), gold["img_z_psi07"]) < ATOL
    img, grad = synthesis_with_grad(G, gold["wplus"], gold["R"])
    assert max_abs(img, gold["img_wplus"]) < ATOL
    assert rel_err(grad, gold["grad_wplus"]) < GRAD_RTOL


# ---------------------------------------------------------------- noise, mapping behaviour


def test_noise_override(G_ada, golden64):
    syn = G_ada.synthesis
    shapes = syn.noise_shapes()
    assert shapes[0] == ("b4.conv1", [1, 1, 4, 4]) and shapes[-1] == ("b64.conv1", [1, 1, 64, 64])
    assert len(shapes) == 9
    ws = torch.tensor(golden64["wplus"][:1])
    const = syn(ws, noise_mode="const")
    stored = [buf.clone() for buf in syn.noise_const_buffers()]
    assert torch.equal(syn(ws, noise=[n.reshape(shape) for n, (_, shape) in zip(stored, shapes)]), const)
    zeros = [torch.zeros(shape) for _, shape in shapes]
    assert torch.equal(syn(ws, noise=zeros, noise_mode="random"), syn(ws, noise_mode="none"))
    # One entry changed -> only that layer's noise differs; None falls back to noise_mode.
    partial = [None] * len(shapes)
    partial[-1] = torch.zeros([1, 1, 64, 64])
    assert not torch.equal(syn(ws, noise=partial, noise_mode="const"), const)
    # Per-sample noise and gradients flow into it (the projector optimises these).
    per_sample = [torch.randn([1, 1, s[-1], s[-1]], requires_grad=True) for _, s in shapes]
    syn(ws, noise=per_sample).square().sum().backward()
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in per_sample)
    with pytest.raises(ValueError, match="one entry per noise layer"):
        syn(ws, noise=zeros[:-1])
    with pytest.raises(ValueError, match="b8.conv0"):
        syn(ws, noise=[zeros[0], torch.zeros([1, 1, 4, 4])] + zeros[2:])
    with pytest.raises(ValueError, match="noise_mode"):
        syn(ws, noise_mode="loud")
    with pytest.raises(ValueError, match=r"\[N, 10, 512\]"):
        syn(ws[:, :9])


def test_random_noise_is_random(G_ada, golden64):
    ws = torch.tensor(golden64["wplus"][:1])
    a = G_ada.synthesis(ws, noise_mode="random")
    b = G_ada.synthesis(ws, noise_mode="random")
    assert not torch.equal(a, b)
    assert not torch.equal(a, G_ada.synthesis(ws, noise_mode="const"))
    with torch.random.fork_rng():
        torch.manual_seed(3)
        c = G_ada.synthesis(ws, noise_mode="random")
        torch.manual_seed(3)
        assert torch.equal(G_ada.synthesis(ws, noise_mode="random"), c)  # drawn from torch's RNG


def test_w_avg_tracks_only_in_training():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=2))
    z = torch.randn([16, 8])
    G.eval()
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, torch.zeros(8))
    G.train()
    w = G.mapping(z)[:, 0].detach()
    assert torch.allclose(G.mapping.w_avg, w.mean(0) * (1 - 0.995), atol=1e-6)
    G.mapping(z, update_emas=False)
    G(z, skip_w_avg_update=True)
    assert torch.allclose(G.mapping.w_avg, w.mean(0) * (1 - 0.995), atol=1e-6)


def test_conditional_mapping():
    G = Generator(z_dim=8, c_dim=5, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=2, embed_features=6, layer_features=7))
    assert [n for n in G.state_dict() if n.startswith("mapping.")] == [
        "mapping.w_avg", "mapping.embed.weight", "mapping.embed.bias",
        "mapping.fc0.weight", "mapping.fc0.bias", "mapping.fc1.weight", "mapping.fc1.bias"]
    assert G.mapping.fc0.weight.shape == (7, 8 + 6)
    c = torch.eye(5)[[0, 3]]
    z = torch.randn([1, 8]).repeat(2, 1)
    ws = G.mapping(z, c)
    assert ws.shape == (2, G.num_ws, 8) and not torch.allclose(ws[0], ws[1])
    assert G(z, c).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(z, None)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_architectures(architecture):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, architecture=architecture)).eval()
    names = list(G.state_dict())
    assert ("synthesis.b4.torgb.weight" in names) == (architecture == "skip")
    assert ("synthesis.b16.skip.weight" in names) == (architecture == "resnet")
    assert "synthesis.b16.torgb.weight" in names
    assert G.num_ws == 6
    z = torch.randn([2, 8])
    img = G(z)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    unfused = G(z, fused_modconv=False)
    assert (img - unfused).abs().max() < 1e-4


def test_channels_dict_table():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channels_dict={"4": 12, "8": 12, "16": 5}))
    assert G.synthesis.b4.const.shape == (12, 4, 4)
    assert G.synthesis.b16.conv0.weight.shape == (5, 12, 3, 3)


# ---------------------------------------------------------------- conv2d_resample


def _reference_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    """The defining composition: zero-insert + pad, FIR filter, convolve, FIR filter, keep every down-th."""
    fw = f.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0 += (fw + up - 1) // 2
        p1 += (fw - up) // 2
    if down > 1:
        p0 += (fw - down + 1) // 2
        p1 += (fw - down) // 2
    x = upfirdn2d.upfirdn2d(x, None, up=up, padding=[p0, p1, p0, p1])
    if up > 1:
        x = upfirdn2d.upfirdn2d(x, f, gain=up ** 2)
    if not flip_weight:
        w = w.flip([2, 3])
    x = torch.nn.functional.conv2d(x, w, groups=groups)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f)[:, :, ::down, ::down]
    return x


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_paths(k, up, down, groups, flip_weight):
    gen = torch.Generator().manual_seed(k * 100 + up * 10 + down + groups)
    x = torch.randn([2, 4, 9, 9], generator=gen, dtype=torch.float64).float()
    w = torch.randn([6, 4 // groups, k, k], generator=gen)
    f = upfirdn2d.setup_filter(torch.tensor([[1.0, 2, 3, 1], [2, 5, 3, 1], [1, 3, 4, 2], [1, 1, 2, 1]]))
    pad = k // 2
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=pad, groups=groups, flip_weight=flip_weight)
    ref = _reference_conv2d_resample(x, w, f, up, down, pad, groups, flip_weight)
    assert y.shape == ref.shape == (2, 6, 9 * up // down, 9 * up // down)
    assert (y - ref).abs().max() < 1e-5


def test_conv2d_resample_asymmetric_padding_and_errors():
    x = torch.randn([1, 2, 6, 6])
    w = torch.randn([3, 2, 3, 3])
    y = conv2d_resample(x, w, padding=[2, 0, 1, 1])
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [2, 0, 1, 1]), w)
    assert torch.allclose(y, ref, atol=1e-6)
    with pytest.raises(ValueError, match="groups"):
        conv2d_resample(x, torch.randn([3, 1, 3, 3]), groups=2)
    with pytest.raises(ValueError, match="channels"):
        conv2d_resample(x, torch.randn([3, 4, 3, 3]))


def test_modulated_conv_matches_explicit_per_sample_kernels():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn([3, 4, 5, 5], generator=gen)
    weight = torch.randn([6, 4, 3, 3], generator=gen)
    styles = torch.randn([3, 4], generator=gen)
    y = modulated_conv2d(x, weight, styles, padding=1)
    for i in range(3):
        wi = weight * styles[i].reshape(1, 4, 1, 1)
        wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        yi = torch.nn.functional.conv2d(x[i:i + 1], wi, padding=1)
        assert torch.allclose(y[i:i + 1], yi, atol=1e-5)
