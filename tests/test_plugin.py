"""A method is one module and one line: a toy stochastic method from outside the package (tests/plugin,
reached through the `wsss.methods` entry point as an installed plugin would be) runs through `wsss run`, the
report, `wsss methods`, `wsss bench` and the registry-wide contract tests, with no edit to wsss."""

from __future__ import annotations

import json

import pytest
import torch

import wsss.localize as L
from wsss.errors import ConfigError
from wsss.localize.base import MethodSpec

from . import test_localize
from .conftest import run_cli

TOY = "toy-erase"


def test_entry_point_method_is_registered_and_in_the_contract_tests():
    spec = L.spec(TOY)
    assert spec.stochastic and spec.normalization == "p99" and spec.factory.__module__ == "toy_wsss_method"
    assert TOY in L.available()
    # the registry-wide tests (tests/test_localize.py) are parametrized over the registry, so they run it
    assert TOY in test_localize.METHODS and TOY in test_localize.STOCHASTIC and TOY in test_localize.CHUNKED


def test_plugin_method_through_run_report_and_methods(tiny_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", tiny_data, "--out", out, "--no-seg", "--methods",
                           f"cam,{TOY}", "--device", "cpu", "--set", "classifier.epochs=1", "--set",
                           f"maps.options.{TOY}.samples=2")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    toy = res["methods"][TOY]
    assert toy["normalization"] == "p99" and 0 <= toy["fixed"]["miou"] <= 1 and toy["seconds_per_image"] > 0
    assert len(list((out / "maps" / TOY).glob("*.npz"))) == len(list((out / "maps" / "cam").glob("*.npz")))
    assert f"| {TOY} |" in (out / "report.md").read_text()
    code, stdout, _ = run_cli(monkeypatch, capsys, "methods")
    assert code == 0 and TOY in stdout


def test_plugin_method_option_typos_are_found_when_the_config_loads(tiny_data):
    from .conftest import tiny_config

    with pytest.raises(ConfigError, match="no option 'keeep'"):
        tiny_config(tiny_data, **{f"maps.options.{TOY}.keeep": 0.5})
    with pytest.raises(ConfigError, match="no option"):
        tiny_config(tiny_data, **{"maps.options.jigsaw.sample": 4})


def test_plugin_method_in_bench():
    from wsss.bench import run_bench

    res = run_bench(size=32, images=2, samples=2, repeats=1)
    assert TOY in res["methods"] and res["methods"][TOY]["ratio_to_floor"] > 0
    assert set(res["methods"]) == {s.name for s in L.specs() if s.requires == "classifier"}


def test_register_from_a_module_and_refusals():
    spec = MethodSpec("toy-saliency-x2", lambda model, **o: L.create("saliency", model, **o), "doubled")
    L.register(spec)
    try:
        model = __import__("wsss.models", fromlist=["create"]).create("smallcnn", 2)
        maps = L.create("toy-saliency-x2", model).attribute(torch.rand(1, 3, 16, 16), torch.tensor([[1.0, 0]]))
        assert maps.shape == (1, 2, 16, 16)
        with pytest.raises(ConfigError, match="already registered"):
            L.register(spec)
    finally:
        L.unregister("toy-saliency-x2")
    with pytest.raises(ConfigError, match="invalid method name"):
        L.register(MethodSpec("amn-x", spec.factory))
    with pytest.raises(ConfigError, match="fusion needs both"):
        MethodSpec("f", spec.factory, inputs=("cam", "jigsaw"))
