"""The plugin loader: fallbacks, one warning, no rebuild storms, cache keys, crash safety.

Compilers are simulated (monkeypatched build functions), so these tests run on a
CPU-only machine in seconds. The real build is exercised by the ``cuda``-marked
tests in test_ops.py on a GPU machine, plus ``test_real_build_is_reused`` here.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT

from torch_utils import custom_ops
from torch_utils.ops import bias_act as bias_act_mod
from torch_utils.ops import upfirdn2d as upfirdn2d_mod

REPO = REPO_ROOT


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Private cache folder, no env override, fresh per-process plugin state."""
    monkeypatch.setenv(custom_ops.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(custom_ops.OPS_ENV, raising=False)
    custom_ops.reset_plugin_state()
    yield tmp_path
    custom_ops.reset_plugin_state()


class BuildCounter:
    """Replacement for ``load_or_build`` that fails like a broken compiler."""

    def __init__(self, message="nvcc fatal   : Unsupported gpu architecture 'compute_120'"):
        self.calls = 0
        self.message = message

    def __call__(self, spec, **kwargs):
        self.calls += 1
        raise RuntimeError(f"Error building extension '{spec.name}':\n{self.message}")


def _pretend_cuda_tensors(monkeypatch):
    """Make the ops believe their (CPU) input lives on a GPU, so they ask for the plugin."""
    monkeypatch.setattr(bias_act_mod, "_plugin_applicable", lambda x: True)
    monkeypatch.setattr(upfirdn2d_mod, "_plugin_applicable", lambda x: True)


def _call_ops_many_times(n=25):
    x = torch.randn(2, 3, 8, 8)
    b = torch.randn(3)
    f = upfirdn2d_mod.setup_filter([1, 3, 3, 1])
    outs = []
    for _ in range(n):
        outs.append(bias_act_mod.bias_act(x, b, act="lrelu", clamp=1.0, impl="cuda"))
        outs.append(upfirdn2d_mod.upsample2d(x, f, impl="cuda"))
    torch.testing.assert_close(outs[-2], bias_act_mod.bias_act(x, b, act="lrelu", clamp=1.0, impl="ref"))
    torch.testing.assert_close(outs[-1], upfirdn2d_mod.upsample2d(x, f, impl="ref"))


def _fallback_warnings(record):
    return [w for w in record if issubclass(w.category, custom_ops.PluginFallbackWarning)]


# --------------------------------------------------------------------------- fallback behaviour

def test_env_var_forces_reference_without_build_or_warning(monkeypatch):
    monkeypatch.setenv(custom_ops.OPS_ENV, "ref")
    builds = BuildCounter()
    monkeypatch.setattr(custom_ops, "load_or_build", builds)
    monkeypatch.setattr(custom_ops, "_toolchain_problem", lambda: None)
    _pretend_cuda_tensors(monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _call_ops_many_times()
    assert builds.calls == 0
    assert _fallback_warnings(record) == []
    assert bias_act_mod.plugin_status() == "disabled"
    assert upfirdn2d_mod.plugin_status() == "disabled"


def test_unknown_env_value_is_an_error(monkeypatch):
    monkeypatch.setenv(custom_ops.OPS_ENV, "fast")
    with pytest.raises(ValueError, match="STYLEGAN_UNMASK_OPS"):
        custom_ops.forced_reference()


def test_cpu_tensors_use_reference_silently(monkeypatch):
    builds = BuildCounter()
    monkeypatch.setattr(custom_ops, "load_or_build", builds)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _call_ops_many_times(5)
    assert builds.calls == 0
    assert _fallback_warnings(record) == []
    assert bias_act_mod.plugin_status(load=False) == "not loaded"


def test_failing_build_warns_once_and_is_not_retried(monkeypatch):
    builds = BuildCounter()
    monkeypatch.setattr(custom_ops, "load_or_build", builds)
    monkeypatch.setattr(custom_ops, "_toolchain_problem", lambda: None)
    _pretend_cuda_tensors(monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _call_ops_many_times(25)
    fallbacks = _fallback_warnings(record)
    assert builds.calls == 2  # once per plugin, not once per call
    assert len(fallbacks) == 2
    assert sorted(str(w.message).split("'")[1] for w in fallbacks) == ["bias_act", "upfirdn2d"]
    message = str(fallbacks[0].message)
    assert "Unsupported gpu architecture" in message and "STYLEGAN_UNMASK_OPS=ref" in message
    status = bias_act_mod.plugin_status()
    assert status.startswith("unavailable: building it failed") and "Unsupported gpu" in status
    log = custom_ops.extensions_dir() / "su_bias_act.failed.log"
    assert "Unsupported gpu architecture" in log.read_text()
    # reset_plugin_state() allows a retry (e.g. after installing the toolkit)
    custom_ops.reset_plugin_state("bias_act")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        bias_act_mod.bias_act(torch.ones(3), impl="cuda")
    assert builds.calls == 3


def test_missing_nvcc_is_reported_without_building(monkeypatch):
    from torch.utils import cpp_extension

    builds = BuildCounter()
    monkeypatch.setattr(custom_ops, "load_or_build", builds)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    _pretend_cuda_tensors(monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(10):
            bias_act_mod.bias_act(torch.randn(4, 3), torch.zeros(3), act="relu", impl="cuda")
    fallbacks = _fallback_warnings(record)
    assert builds.calls == 0
    assert len(fallbacks) == 1
    assert "nvcc" in str(fallbacks[0].message) and "CUDA_HOME" in str(fallbacks[0].message)


def test_missing_ninja_is_reported(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/usr/local/cuda")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    assert "ninja" in upfirdn2d_mod.plugin_status()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_status_on_this_cpu_machine_names_the_reason():
    status = bias_act_mod.plugin_status()
    assert status.startswith("unavailable: ")
    assert "CPU-only" in status or "no usable CUDA" in status


# --------------------------------------------------------------------------- cache key

def _write_sources(folder: Path, cu_text="kernel v1"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.cpp").write_text("binding")
    (folder / "demo.cu").write_text(cu_text)
    (folder / "demo.h").write_text("header v1")
    return custom_ops.PluginSpec("demo", sources=("demo.cpp", "demo.cu"), headers=("demo.h",))


def test_cache_key_tracks_sources_and_environment(tmp_path):
    spec = _write_sources(tmp_path / "src")
    fp = custom_ops.environment_fingerprint()
    key = custom_ops.build_key(spec, tmp_path / "src", fp)
    assert key == custom_ops.build_key(spec, tmp_path / "src", fp)  # deterministic
    (tmp_path / "src" / "demo.cu").write_text("kernel v2")
    key_cu = custom_ops.build_key(spec, tmp_path / "src", fp)
    (tmp_path / "src" / "demo.h").write_text("header v2")
    key_h = custom_ops.build_key(spec, tmp_path / "src", fp)
    assert len({key, key_cu, key_h}) == 3
    assert custom_ops.build_key(spec, tmp_path / "src", {**fp, "torch": "9.9.9"}) != key_h
    assert custom_ops.build_key(spec, tmp_path / "src", {**fp, "arch": "gpus:9.0"}) != key_h
    assert custom_ops.build_key(spec, tmp_path / "src", {**fp, "torch_cuda": "99.0"}) != key_h


def test_real_plugin_key_covers_shipped_sources():
    spec = bias_act_mod.PLUGIN
    for path in spec.files():
        assert path.is_file(), f"plugin source missing: {path}"
    assert custom_ops.module_name(spec, custom_ops.build_key(spec)).isidentifier()


# --------------------------------------------------------------------------- build folder handling

class FakeToolchain:
    """compile/import stand-ins: a 'module file' is valid when it reads b'good'."""

    def __init__(self, delay=0.0):
        self.compiles = 0
        self.delay = delay

    def compile(self, modname, sources, build_dir, spec, verbose):
        self.compiles += 1
        (build_dir / "build.ninja").write_text("partial")
        time.sleep(self.delay)
        (build_dir / f"{modname}.so").write_bytes(b"good")
        return None

    @staticmethod
    def import_(modname, path):
        if Path(path).read_bytes() != b"good":
            raise ImportError(f"{path}: invalid ELF header")
        return types.SimpleNamespace(name=modname, path=Path(path))


def _load(spec, src, cache, tc, key="k" * 64):
    return custom_ops.load_or_build(spec, root=src, cache=cache, key=key, compile_fn=tc.compile,
                                    import_fn=tc.import_)


def test_build_is_published_atomically_and_reused(tmp_path):
    spec, src, cache, tc = _write_sources(tmp_path / "src"), tmp_path / "src", tmp_path / "ext", FakeToolchain()
    mod = _load(spec, src, cache, tc)
    final = cache / custom_ops.module_name(spec, "k" * 64)
    assert mod.path.parent == final and tc.compiles == 1
    assert sorted(p.name for p in final.iterdir()) == sorted([custom_ops.MARKER_NAME, mod.path.name])
    assert not list(cache.glob(".tmp-*")), "temporary build folders must be removed"
    _load(spec, src, cache, tc)
    assert tc.compiles == 1, "a complete cached build must be reused"


@pytest.mark.parametrize("damage", ["no_marker", "wrong_key", "corrupt_module", "missing_module"])
def test_damaged_build_folder_is_rebuilt(tmp_path, damage):
    spec, src, cache, tc = _write_sources(tmp_path / "src"), tmp_path / "src", tmp_path / "ext", FakeToolchain()
    first = _load(spec, src, cache, tc)
    final = first.path.parent
    marker = final / custom_ops.MARKER_NAME
    if damage == "no_marker":  # e.g. a half-written folder from an older tool
        marker.unlink()
    elif damage == "wrong_key":
        marker.write_text(marker.read_text().replace("k" * 64, "z" * 64))
    elif damage == "corrupt_module":
        first.path.write_bytes(b"trunc")
    else:
        first.path.unlink()
    mod = _load(spec, src, cache, tc)
    assert tc.compiles == 2
    assert mod.path.read_bytes() == b"good" and (final / custom_ops.MARKER_NAME).exists()


def test_leftovers_of_a_dead_builder_are_removed(tmp_path):
    spec, src, cache, tc = _write_sources(tmp_path / "src"), tmp_path / "src", tmp_path / "ext", FakeToolchain()
    modname = custom_ops.module_name(spec, "k" * 64)
    stale = cache / f".tmp-{modname}-99999-deadbeef-build"
    stale.mkdir(parents=True)
    (stale / f"{modname}.so").write_bytes(b"half")
    _load(spec, src, cache, tc)
    assert not stale.exists()


def test_failed_build_leaves_nothing_behind(tmp_path):
    spec, src, cache = _write_sources(tmp_path / "src"), tmp_path / "src", tmp_path / "ext"

    def broken(modname, sources, build_dir, spec, verbose):
        (build_dir / "partial.o").write_bytes(b"x")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        custom_ops.load_or_build(spec, root=src, cache=cache, key="k" * 64, compile_fn=broken,
                                 import_fn=FakeToolchain.import_)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_builders_in_threads_compile_once(tmp_path):
    spec, src, cache, tc = _write_sources(tmp_path / "src"), tmp_path / "src", tmp_path / "ext", FakeToolchain(0.3)
    results, errors = [], []

    def worker():
        try:
            results.append(_load(spec, src, cache, tc))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert tc.compiles == 1


_CHILD = textwrap.dedent("""
    import sys, time, types
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from torch_utils import custom_ops
    src, cache, log, delay = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    spec = custom_ops.PluginSpec("demo", sources=("demo.cpp", "demo.cu"), headers=("demo.h",))

    def compile_fn(modname, sources, build_dir, spec, verbose):
        with open(log, "a") as fh:
            fh.write("compile\\n")
        (build_dir / "started").write_text("1")
        time.sleep(delay)
        (build_dir / (modname + ".so")).write_bytes(b"good")

    def import_fn(modname, path):
        assert Path(path).read_bytes() == b"good"
        return types.SimpleNamespace(path=path)

    mod = custom_ops.load_or_build(spec, root=src, cache=cache, key="k" * 64, compile_fn=compile_fn,
                                   import_fn=import_fn)
    print("LOADED", mod.path)
""")


def _spawn(script, src, cache, log, delay):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(src), str(cache), str(log), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_processes_building_at_once_compile_once(tmp_path):
    _write_sources(tmp_path / "src")
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(repo=str(REPO)))
    log = tmp_path / "compiles.log"
    procs = [_spawn(script, tmp_path / "src", tmp_path / "ext", log, 1.0) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "LOADED" in out
    assert log.read_text().count("compile") == 1


def test_builder_killed_mid_build_does_not_poison_the_cache(tmp_path):
    spec = _write_sources(tmp_path / "src")
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(repo=str(REPO)))
    cache = tmp_path / "ext"
    proc = _spawn(script, tmp_path / "src", cache, tmp_path / "compiles.log", 120.0)
    try:
        deadline = time.time() + 60
        while not list(cache.glob(".tmp-*/started")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "child never started building"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # simulate a crash while holding the build lock
        proc.communicate()
    assert list(cache.glob(".tmp-*")), "the killed build left its temporary folder"
    tc = FakeToolchain()
    mod = _load(spec, tmp_path / "src", cache, tc)  # must neither hang on the lock nor reuse the half build
    assert tc.compiles == 1 and mod.path.read_bytes() == b"good"
    assert not list(cache.glob(".tmp-*"))


# --------------------------------------------------------------------------- real build (GPU machines)

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_build_is_reused(monkeypatch, tmp_path):
    """Compile both plugins into an empty cache, then load them in a fresh process
    whose compiler is disabled: the cached build must be used."""
    if custom_ops.forced_reference():
        pytest.skip("STYLEGAN_UNMASK_OPS=ref")
    assert bias_act_mod.plugin_status() == "ok", bias_act_mod.plugin_status()
    assert upfirdn2d_mod.plugin_status() == "ok", upfirdn2d_mod.plugin_status()
    built = sorted(p.name for p in custom_ops.extensions_dir().iterdir() if p.is_dir())
    assert any(n.startswith("su_bias_act_") for n in built) and any(n.startswith("su_upfirdn2d_") for n in built)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from torch_utils import custom_ops
        def no_compiler(*a, **k):
            raise RuntimeError("compiler invoked although a cached build exists")
        custom_ops._compile = no_compiler
        from torch_utils.ops import bias_act, upfirdn2d
        print(bias_act.plugin_status(), upfirdn2d.plugin_status())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "ok"], out.stdout + out.stderr
    shutil.rmtree(custom_ops.extensions_dir(), ignore_errors=True)
