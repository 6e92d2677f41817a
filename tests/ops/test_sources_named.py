"""Each CUDA/C++ source names its Python wrapper, and each wrapper names its sources (and loads exactly them)."""
from __future__ import annotations

from conftest import REPO_ROOT

from torch_utils.ops import bias_act, upfirdn2d

WRAPPERS = {"bias_act": bias_act, "upfirdn2d": upfirdn2d}


def test_sources_and_wrappers_name_each_other():
    sources = sorted(p for p in (REPO_ROOT / "custom_ops").iterdir() if p.suffix in (".cpp", ".cu", ".h"))
    assert {p.stem for p in sources} == set(WRAPPERS)
    for path in sources:
        assert f"Wrapper: torch_utils/ops/{path.stem}.py" in path.read_text(), path.name
    for op, module in WRAPPERS.items():
        files = set(module.PLUGIN.sources) | set(module.PLUGIN.headers)
        assert files == {p.name for p in sources if p.stem == op}
        for name in files:
            assert f"custom_ops/{name}" in module.__doc__, (op, name)
