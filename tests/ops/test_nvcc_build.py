"""The CUDA plugins compile with NVIDIA's compiler, without a GPU (``python -m pytest -m nvcc``).

Each plugin is compiled once per session (ninja runs its translation units in
parallel), for every GPU architecture the toolkit supports among
``TARGET_ARCHS``, with the runtime loader's flags plus warnings as errors.
Skipped, saying why, only where NVIDIA's compiler packages are absent.
"""
from __future__ import annotations

import shutil

import pytest

from torch_utils import custom_ops, nvcc_check
from torch_utils.ops import bias_act, upfirdn2d

pytestmark = pytest.mark.nvcc

PLUGINS = {"bias_act": bias_act.PLUGIN, "upfirdn2d": upfirdn2d.PLUGIN}


@pytest.fixture(scope="session")
def toolchain():
    found, why = nvcc_check.find_toolchain()
    if found is None:
        pytest.skip(f"NVIDIA's CUDA compiler is not installed: {why}")
    if shutil.which("ninja") is None:
        pytest.skip("ninja is not installed (pip install ninja)")
    return found


@pytest.fixture(scope="session")
def builds(toolchain, tmp_path_factory):
    root = tmp_path_factory.mktemp("nvcc")
    return {name: nvcc_check.build_plugin(spec, toolchain, root) for name, spec in PLUGINS.items()}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_every_translation_unit_compiles_warning_free(builds, name):
    build = builds[name]
    assert build.compiled, f"{name} did not compile:\n{build.log[-6000:]}"
    assert [o.name for o in build.objects] == [nvcc_check._object_name(s) for s in PLUGINS[name].sources]


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_compiled_for_the_architectures_users_have(builds, toolchain, name):
    build = builds[name]
    supported, unsupported = toolchain.split_archs()
    assert build.archs == supported and build.skipped_archs == unsupported
    # Volta (7.0) left CUDA 13; everything from Turing to Hopper must be there, Hopper also as PTX.
    assert {"7.5", "8.0", "8.6", "9.0"} <= set(build.archs)
    for arch in build.archs:
        cc = arch.replace(".", "")
        assert f"arch=compute_{cc},code=sm_{cc}" in build.nvcc_command
    newest = max(build.archs, key=lambda a: tuple(map(int, a.split(".")))).replace(".", "")
    assert f"arch=compute_{newest},code=compute_{newest}" in build.nvcc_command
    for flag in nvcc_check.WERROR_CUDA_CFLAGS:
        assert flag in build.nvcc_command


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_kernels_instantiate_for_every_dtype_and_index_width(builds, name):
    kernels = builds[name].kernel_instantiations()
    assert kernels, f"no kernels found in {name}'s CUDA object"
    for kernel, instances in kernels.items():
        expected = {f"{t}, {i}" for t in nvcc_check.KERNEL_DTYPES for i in nvcc_check.INDEX_TYPES}
        assert expected <= set(instances), f"{kernel}: missing {sorted(expected - set(instances))}"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_links_against_torch_with_only_cuda_symbols_left(builds, toolchain, name):
    ok, unexpected = nvcc_check.link_check(builds[name], toolchain)
    assert ok, f"{name}: unresolved symbols no CUDA build of torch provides: {unexpected[:20]}"


def test_a_syntax_error_fails_with_the_compilers_message(toolchain, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(custom_ops.source_dir(), src, ignore=shutil.ignore_patterns("__pycache__"))
    cu = src / "bias_act.cu"
    cu.write_text("this is not C++;\n" + cu.read_text())
    build = nvcc_check.build_plugin(bias_act.PLUGIN, toolchain, tmp_path / "build", archs=("9.0",), source_root=src)
    assert not build.compiled
    assert "bias_act.cu" in build.log and "error" in build.log.lower()


def test_missing_compiler_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setattr(nvcc_check, "_candidate_homes", lambda: iter(()))
    found, why = nvcc_check.find_toolchain()
    assert found is None and nvcc_check.INSTALL_HINT in why


def test_arch_list_adds_ptx_for_the_newest_only():
    assert nvcc_check.arch_list(["9.0", "7.5", "8.6"]) == "7.5;8.6;9.0+PTX"
