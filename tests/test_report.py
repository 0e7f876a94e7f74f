"""The run report on a hand-made run directory: tables with the right percents, every figure it references
exists, and a run with (almost) no results still renders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.config import RunConfig
from wsss.labelio import save_label_png
from wsss.mapsio import save_maps
from wsss.report import write_report
from wsss.run.rundir import Run

S = 16
IDS = {"train": ["a1", "a2"], "tune": ["b1"], "val": ["c1"]}


def _mask(seed: int) -> np.ndarray:
    m = np.zeros((S, S), np.uint8)
    m[2:9, 3:12] = 1
    if seed % 2:
        m[10:15, 1:6] = 2
    m[0, :] = 255
    return m


@pytest.fixture
def tiny_voc_dir(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nbird\nboat\n")
    rng = np.random.default_rng(0)
    for split, ids in IDS.items():
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for n, i in enumerate(ids):
            rgb = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / "JPEGImages" / f"{i}.jpg")
            save_label_png(root / "SegmentationClass" / f"{i}.png", _mask(n + 1))
    return root


def _sweep(peak: float) -> list[dict]:
    return [{"t": t, "miou": peak - abs(t - 0.3) / 2, "precision": 0.5 + t / 2, "recall": 1 - t}
            for t in np.round(np.arange(0.05, 1.0, 0.05), 2).tolist()]


def _make_run(tmp_path: Path, voc: Path, results: dict | None) -> Run:
    path = tmp_path / "run"
    path.mkdir()
    RunConfig(data=str(voc)).dump(path / "config.yaml")
    if results is not None:
        (path / "results.json").write_text(json.dumps(results))
    return Run(path)


RESULTS = {
    "timings": {"train-cls@plain": 12.0, "maps/cam": 1.5, "pseudo/cam": 0.5, "total": 20.0},
    "classifiers": {"plain": {"val_map": 0.8123, "seconds": 12.0, "arch": "smallcnn", "jigsaw_aug": 0.0}},
    "methods": {
        "cam": {
            "split": "train", "normalization": "max", "best": {"t": 0.3, "miou": 0.4567},
            "fixed": {"t": 0.35, "miou": 0.4321, "precision": 0.7012, "recall": 0.5561, "chosen_on": "tune"},
            "robust_width": 0.25, "spread_0.1_0.5": 0.1234, "sweep": _sweep(0.4567),
            "per_class_iou": {"0": 0.9, "1": 0.3, "2": None}, "ap": 0.6111, "oracle_miou": 0.5012,
            "ndr_recall": 0.2222, "seconds_per_image": 0.002,
            "activation_hist": {"bins": 20, "fg": list(range(20)), "bg": [100] + [1] * 19},
        },
        "jigsaw": {  # partial: no AP, NDR, hist, per-class
            "split": "train", "normalization": "p99", "best": {"t": 0.25, "miou": 0.61},
            "fixed": {"t": 0.2, "miou": 0.5987, "precision": 0.6, "recall": 0.7, "chosen_on": "tune"},
            "sweep": _sweep(0.61), "seconds_per_image": 0.05,
        },
    },
    "segmentation": {"cam": {"val_miou": 0.3, "seconds": 5.0}, "gt": {"val_miou": 0.6, "seconds": 5.0}},
    "ablation": {
        "variants": {f"jigsaw N={n}": {"tune_miou": 0.5, "fixed_t": 0.2, "miou": m, "best_miou": m + 0.01,
                                        "precision": 0.6, "recall": 0.7, "ndr_recall": None, "robust_width": 0.1,
                                        "seconds_per_image": 0.1 * n} for n, m in ((4, 0.5), (8, 0.55))},
        "tables": [{"title": "Samples N", "kind": "variants", "entries": ["jigsaw N=4", "jigsaw N=8", "absent"],
                    "command": "wsss ablate --run RUN --samples 4,8"}]},
}


def _referenced(report: Path) -> list[Path]:
    return [report.parent / p for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


def test_report_full(tmp_path, tiny_voc_dir):
    run = _make_run(tmp_path, tiny_voc_dir, RESULTS)
    rng = np.random.default_rng(1)
    for i in IDS["train"]:
        classes = np.array([1, 2])
        for key in ("cam", "jigsaw"):
            save_maps(run.maps_dir(key) / f"{i}.npz", rng.random((2, S, S)), classes)
        run.masks_dir("cam").mkdir(parents=True, exist_ok=True)
        save_label_png(run.masks_dir("cam") / f"{i}.png", _mask(2))  # no jigsaw masks: column skipped
    path = write_report(run)
    assert path == run.path / "report.md"
    text = path.read_text()
    assert "| jigsaw | 0.20 | 59.9 | 60.0 | 70.0 | 61.0 (0.25) | — | — | — | — | — | 0.05 |" in text
    cam = "| cam | 0.35 | 43.2 | 70.1 | 55.6 | 45.7 (0.30) | 0.25 | 12.3 | 61.1 | 50.1 | 22.2 | 0.002 |"
    assert cam in text
    assert text.index("| jigsaw |") < text.index("| cam |")  # sorted by mIoU@fixed
    assert "| plain | smallcnn | plain | 0.0 | 81.2 | 12 |" in text  # recipe column: plain
    assert "| cam | 30.0 | 50.0% | 5 |" in text and "| gt (fully supervised bound) | 60.0 |" in text
    assert "### Samples N" in text and "`wsss ablate --run RUN --samples 4,8`" in text
    assert "| jigsaw N=8 | 50.0 | 0.20 | 55.0 | 56.0 | 60.0 | 70.0 | — | 0.10 | 0.800 |" in text  # formatted once, here
    assert "| bird | 30.0 |" in text and f"wsss report --run {run.path}" in text
    assert "`train` (2 images)" in text and "`tune` (1 image)" in text  # splits counted
    figs = _referenced(path)
    names = {p.name for p in figs}
    assert {"threshold_sweep.png", "precision_recall.png", "activation_hist.png", "overlays.png",
            "cost_quality.png"} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in figs)
    assert " saliency" not in text.replace("gradient saliency", "")


@pytest.mark.parametrize("results", [None, {"timings": {"total": 3.0}}])
def test_report_almost_empty(tmp_path, tiny_voc_dir, results):
    run = _make_run(tmp_path, tiny_voc_dir, results)
    text = write_report(run).read_text()
    assert "No method results" in text and "wsss report --run" in text
    assert all(p.is_file() for p in _referenced(run.path / "report.md"))


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_html_is_self_contained_and_renders_in_chromium(tmp_path, tiny_voc_dir):
    """report.html embeds its figures and shows every table of report.md; checked in headless Chromium
    (Debian's `chromium` package; CI installs it)."""
    import subprocess

    run = _make_run(tmp_path, tiny_voc_dir, RESULTS)
    rng = np.random.default_rng(1)
    for i in IDS["train"]:
        save_maps(run.maps_dir("cam") / f"{i}.npz", rng.random((2, S, S)), np.array([1, 2]))
    md = write_report(run, formats=("pdf",)).read_text()
    page = (run.path / "report.html").read_text()
    assert 'src="figures/' not in page and page.count('src="data:image/png;base64,') == len(_referenced(run.path / "report.md"))
    assert (run.path / "figures" / "threshold_sweep.pdf").read_bytes()[:4] == b"%PDF"
    tables = sum(1 for line in md.splitlines() if line.startswith("|---") or line.startswith("|--"))
    assert tables >= 4 and page.count("<table>") == tables
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                          (run.path / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-1000:]
    assert dom.stdout.count("<table>") == tables and "Pseudo-masks" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                    "--window-size=1280,2400", (run.path / "report.html").as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text, tables and figures: not a blank page


def test_identical_methods_are_drawn_once_and_marked(tmp_path, tiny_voc_dir):
    from wsss.report.report import identical_methods

    res = json.loads(json.dumps(RESULTS))
    twin = json.loads(json.dumps(res["methods"]["cam"]))
    for r in twin["sweep"]:
        r["miou"] += 5e-6  # gradcam at the last layer: CAM up to float rounding
    res["methods"]["gradcam"] = twin
    order = ["jigsaw", "cam", "gradcam"]
    from wsss.results import Results

    assert identical_methods(Results.model_validate(res).methods, order) == {"cam": ["gradcam"]}
    run = _make_run(tmp_path, tiny_voc_dir, res)
    text = write_report(run).read_text()
    assert "| gradcam (= cam within 0.01 points) |" in text
