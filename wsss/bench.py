"""Throughput of every localizer as a ratio to the floor, measured in one process (``wsss bench``).

The floor of a gradient method is one forward + one input-gradient backward per (image, sample, class):
measured here on the same model, batch size and input size as each method's chunk. Ratios, not absolute
times, are what is comparable across machines. Also: the training step (parameter gradients) for
context, and captum's NoiseTunnel(Saliency) against our SmoothGrad when captum is installed.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from wsss import localize, models


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def _floor(model, size: int, batch: int, classes_per_image: int, repeats: int, device) -> float:
    """Seconds per (sample . class) of one forward + one input-gradient backward per class, batch ``batch``."""
    xb = torch.rand(batch, 3, size, size, device=device)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)

    def step():
        leaf = xb.clone().requires_grad_(True)
        logits = model(leaf)
        for c in range(classes_per_image):  # one forward, one input-gradient backward per class
            torch.autograd.grad(logits[:, c].sum(), leaf, retain_graph=c < classes_per_image - 1)

    t = _best_of(step, repeats)
    for p, flag in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(flag)
    return t / (batch * classes_per_image)  # a forward is shared by the classes, as in every method


def _train_step(model, x, repeats: int) -> float:
    def step():
        model.train()
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)
        model.eval()

    return _best_of(step, repeats) / x.shape[0]


def _bench_options(spec: localize.MethodSpec, samples: int, chunk: int) -> dict:
    """``samples`` and ``chunk_size`` for a stochastic method (a fusion passes them to its filler)."""
    if not spec.stochastic:
        return {}
    known = spec.defaults()
    return {k: v for k, v in (("samples", samples), ("chunk_size", chunk)) if spec.is_fusion or k in known}


def _captum_ratio(model, x, y, samples: int, classes_per_image: int, repeats: int) -> float | None:
    """captum NoiseTunnel(Saliency) time over our SmoothGrad on the same inputs (None without captum)."""
    try:
        from captum.attr import NoiseTunnel, Saliency
    except ImportError:
        return None
    ours = localize.create("smoothgrad", model, samples=samples, chunk_size=samples)
    t_ours = _best_of(lambda: ours.attribute(x, y), repeats)
    for p in model.parameters():
        p.requires_grad_(False)
    nt = NoiseTunnel(Saliency(model))

    def captum_run():
        for c in range(classes_per_image):  # captum takes one target per call
            targets = y.argsort(dim=1, descending=True)[:, c]
            nt.attribute(x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples, stdevs=0.15,
                         target=targets, abs=True)

    t_captum = _best_of(captum_run, repeats)
    for p in model.parameters():
        p.requires_grad_(True)
    return t_captum / t_ours


def run_bench(arch: str = "smallcnn", size: int = 96, images: int = 4, classes_per_image: int = 2, samples: int = 16,
              repeats: int = 3, device: str = "cpu", out: Path | None = None, chunk: int = 16) -> dict:
    """Every registered method that runs on a classifier, timed on the same model and inputs, as a ratio to
    the floor (stochastic methods against the floor at their chunk's batch size)."""
    dev = torch.device(device)
    k = 6
    torch.manual_seed(0)
    model = models.create(arch, k).to(dev).eval()
    x = torch.rand(images, 3, size, size, device=dev)
    y = torch.zeros(images, k, device=dev)
    for i in range(images):
        y[i, torch.randperm(k)[:classes_per_image]] = 1
    floor_chunk = _floor(model, size, images * min(chunk, samples), classes_per_image, repeats, dev)
    floor_one = _floor(model, size, images, classes_per_image, repeats, dev)
    rows = {}
    for spec in localize.specs():
        if spec.requires != "classifier":
            continue
        loc = spec.create(model, **_bench_options(spec, samples, chunk))
        t = _best_of(lambda loc=loc: loc.attribute(x, y), repeats)
        n = samples if spec.stochastic else 1
        per = t / (images * n * classes_per_image)
        rows[spec.name] = {"seconds_per_image": t / images, "seconds_per_sample_class": per,
                           "ratio_to_floor": per / (floor_chunk if spec.stochastic else floor_one)}
    result = {
        "arch": arch, "size": size, "images": images, "classes_per_image": classes_per_image, "samples": samples,
        "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.platform(), "floor_seconds_per_sample_class": floor_chunk,
        "train_step_seconds_per_image": _train_step(model, x, repeats), "methods": rows,
        "captum_smoothgrad_over_ours": _captum_ratio(model, x, y, samples, classes_per_image, repeats),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def format_bench(res: dict) -> str:
    lines = [
        f"{res['arch']} @ {res['size']} px, {res['images']} images x {res['classes_per_image']} classes, "
        f"N = {res['samples']}, {res['device']} ({res['threads']} threads)",
        f"floor (fwd + input-grad bwd) per sample.class: {res['floor_seconds_per_sample_class'] * 1e3:.2f} ms; "
        f"training step per image: {res['train_step_seconds_per_image'] * 1e3:.2f} ms",
        f"{'method':<12}{'s/image':>10}{'ms/(sample.class)':>20}{'x floor':>9}",
    ]
    for name, r in res["methods"].items():
        lines.append(
            f"{name:<12}{r['seconds_per_image']:>10.4f}{r['seconds_per_sample_class'] * 1e3:>20.3f}"
            f"{r['ratio_to_floor']:>9.2f}"
        )
    if res.get("captum_smoothgrad_over_ours"):
        lines.append(
            f"captum NoiseTunnel(Saliency) time / ours (SmoothGrad): {res['captum_smoothgrad_over_ours']:.2f}"
        )
    return "\n".join(lines)
