"""The README's code runs as written: the Python API snippet (on a tiny run in place of `demo_run`) and the
plugin example of "Adding a method"."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = (Path(__file__).parent.parent / "README.md").read_text()


def _python_block(after_heading: str) -> str:
    section = README[README.index(after_heading):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_python_api_snippet_runs(tiny_data, tmp_path, capsys):
    from wsss.run.rundir import Run
    from wsss.run.stages import classifier

    from .conftest import tiny_config

    run = Run.create(tmp_path / "demo_run", tiny_config(tiny_data, **{"classifier.epochs": 1}))
    classifier.train(run, progress=False)
    code = _python_block("## Python API").replace('Run("demo_run")', f'Run({str(run.path)!r})')
    exec(compile(code, "README.md", "exec"), {})
    assert "torch.Size([48, 48])" in capsys.readouterr().out


def test_plugin_example_runs():
    import wsss.localize as L
    from wsss.models import create

    namespace: dict = {}
    exec(compile(_python_block("### Adding a method"), "README.md", "exec"), namespace)
    spec = namespace["SPEC"]
    L.register(spec)
    try:
        loc = L.create("erase", create("smallcnn", 3), samples=2, seed=0)
        maps = loc.attribute(torch.rand(1, 3, 32, 32), torch.tensor([[1.0, 0, 1]]))
        assert maps.shape == (1, 3, 32, 32) and maps[0, 1].sum() == 0 and maps[0, 0].sum() > 0
        assert "erase" in L.available()
    finally:
        L.unregister("erase")
