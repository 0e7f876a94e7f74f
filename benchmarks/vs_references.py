"""wsss against the libraries people use today, one process, same model, inputs, classes and threads.

    PYTHONPATH=. python benchmarks/vs_references.py                 # default: short (< 5 min on a 2-core CPU)
    PYTHONPATH=. python benchmarks/vs_references.py --repeats 5 --samples 16 --models lite0
    PYTHONPATH=. python benchmarks/vs_references.py --device cuda --amp   # bf16 autocast for wsss (GPU check)

For 1, 2 and 4 present classes per image, on smallcnn (K = 20, 160 px), torchvision-style ResNet-50 (our
``wsss.models.create("resnet50")``, random init, 224 px; speed does not depend on the weights) and the
EfficientNet-Lite0 ImageNet classifier (K = 1000, the top-k classes of a full-size photo,
``skimage.data.chelsea()``, 300 x 451), it times

* Grad-CAM / Grad-CAM++ of all present classes (wsss, compact and dense output) against pytorch-grad-cam's
  ``GradCAM`` / ``GradCAMPlusPlus`` called once per class slot with the whole batch (one target per image,
  the most favourable way to call it) and captum's ``LayerGradCam`` (bilinear upsampling, ReLU);
* gradient saliency against captum ``Saliency(abs=True)``, SmoothGrad against captum
  ``NoiseTunnel(Saliency)`` (one call per class slot, all samples in one batch);
* CAM, jigsaw with both backward modes, and the floor (one forward + one input-gradient backward per class of
  the same model and batch) to give per (sample . class) ratios and the marginal cost of the 2nd and 4th class;

checks the agreement of the maps in the same run (Pearson correlation per (image, class) map; >= 0.999 is
expected where the definitions match: Grad-CAM, Grad-CAM++, saliency; SmoothGrad draws different noise), and
measures the peak resident memory of each call (a sampling thread reading /proc/self/statm; the script
re-executes itself with a static glibc mmap threshold so that freed tensors leave the resident set).

Writes ``benchmarks/results/vs_references_<device>.json`` and prints a table. Ratios, not absolute times,
are what carries across machines; on a shared machine take the best of several repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from wsss import localize, models

RESULTS = Path(__file__).parent / "results"
KS = (1, 2, 4)


# ---- measuring --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size above the level at entry, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.0005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss() - self.base)
            time.sleep(self.interval)

    def __enter__(self):
        self.base = _rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss() - self.base)


def measure(fn, repeats: int, device: torch.device, memory: bool = True) -> tuple[float, int | None, object]:
    """(best seconds of ``repeats`` calls after a first one, peak memory of the first call in bytes (it includes
    one-time allocations), the first call's result)."""
    peak = None
    if memory and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - base
    elif memory:
        with PeakRSS() as p:
            out = fn()
        peak = p.peak
    else:
        out = fn()
        _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), peak, out


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float(np.allclose(a, b))


def min_corr(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Smallest correlation over the (image, slot) maps of two ``(S, B, H, W)`` stacks."""
    return min(corr(ours[j, i], theirs[j, i]) for j in range(ours.shape[0]) for i in range(ours.shape[1]))


# ---- setups -----------------------------------------------------------------------------------------------
def setup(name: str, k: int, device: torch.device, seed: int = 0):
    """(model, images, labels (B, K) with k present classes per image, Grad-CAM layer name)."""
    g = torch.Generator().manual_seed(seed)
    if name == "lite0":
        from skimage import data

        from wsss.models.efficientnet import imagenet_classifier

        model = imagenet_classifier().to(device).eval()
        x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float().div(255).to(device)
        with torch.no_grad():
            top = model(x).topk(k, dim=1).indices
        labels = torch.zeros(1, 1000, device=device).scatter_(1, top, 1.0)
        return model, x, labels
    torch.manual_seed(seed)
    arch, size, b, num = {"smallcnn": ("smallcnn", 160, 2, 20), "resnet50": ("resnet50", 224, 1, 20)}[name]
    model = models.create(arch, num).to(device).eval()
    x = torch.rand(b, 3, size, size, generator=g).to(device)
    labels = torch.zeros(b, num)
    for i in range(b):
        labels[i, torch.randperm(num, generator=g)[:k]] = 1
    return model, x, labels.to(device)


def floor_fn(model, x: torch.Tensor, k: int, amp: bool = False):
    """One forward + one input-gradient backward per class: the least any input-gradient method does (with the
    same autocast as the wsss calls)."""
    def run():
        leaf = x.detach().requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(leaf)
        for c in range(k):
            torch.autograd.grad(logits[:, c].sum(), leaf, retain_graph=c < k - 1)
    return run


def frozen_params(model, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


# ---- one (model, k) cell -----------------------------------------------------------------------------------
def run_cell(name: str, k: int, device: torch.device, repeats: int, samples: int, amp: bool) -> dict:
    from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as PgcGradCAMPP
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, labels = setup(name, k, device)
    b, (h, w) = x.shape[0], x.shape[-2:]
    slots = localize.slot_classes(labels)  # (B, k)
    rows: dict[str, dict] = {}

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def ours(method, compact=True, **opts):
        loc = localize.create(method, model, **opts)

        def run():
            with autocast():
                res = loc.attribute(x, labels, compact=compact)
            return res.maps if compact else localize.pick(res, slots)
        return run

    def as_stack(maps: torch.Tensor) -> np.ndarray:  # (B, S, H, W) -> (S, B, H, W)
        return maps.detach().float().cpu().numpy().transpose(1, 0, 2, 3)

    def add(key, fn, memory=True):
        t, peak, out = measure(fn, repeats, device, memory)
        rows[key] = {"seconds": t, "seconds_per_image": t / b, "peak_bytes": peak}
        return out

    # -- Grad-CAM family: wsss vs pytorch-grad-cam vs captum ------------------------------------------------
    frozen_params(model, True)  # how users call pytorch-grad-cam: a model with trainable parameters
    layer, gradcam_maps = model.features, None
    for ours_name, pgc_cls in (("gradcam", PgcGradCAM), ("gradcampp", PgcGradCAMPP)):
        mine = as_stack(add(f"wsss.{ours_name}", ours(ours_name)))
        gradcam_maps = mine if ours_name == "gradcam" else gradcam_maps
        if name == "lite0":  # the dense (B, K, H, W) output, for its cost at K = 1000
            add(f"wsss.{ours_name}.dense", ours(ours_name, compact=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pgc = pgc_cls(model=model, target_layers=[layer])

            def pgc_run(pgc=pgc):
                return np.stack([pgc(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in slots[:, j]])
                                 for j in range(k)])
            theirs = add(f"pytorch-grad-cam.{ours_name}", pgc_run)
            pgc.activations_and_grads.release()
        rows[f"pytorch-grad-cam.{ours_name}"]["min_corr"] = min_corr(mine, theirs)
        model.zero_grad(set_to_none=True)
    lgc = LayerGradCam(model, layer)

    def captum_gc():
        outs = []
        for j in range(k):
            a = lgc.attribute(x, target=slots[:, j].tolist(), relu_attributions=True)
            outs.append(LayerAttribution.interpolate(a, (h, w), interpolate_mode="bilinear")[:, 0].detach())
        return torch.stack(outs).cpu().numpy()
    theirs = add("captum.layergradcam", captum_gc)
    rows["captum.layergradcam"]["min_corr"] = min_corr(gradcam_maps, theirs)
    frozen_params(model, False)

    # -- CAM ------------------------------------------------------------------------------------------------
    add("wsss.cam", ours("cam"))
    if name == "lite0":
        add("wsss.cam.dense", ours("cam", compact=False))

    # -- saliency, SmoothGrad vs captum ----------------------------------------------------------------------
    sal = as_stack(add("wsss.saliency", ours("saliency")))
    cs = Saliency(model)

    def captum_sal():
        return torch.stack([cs.attribute(x, target=slots[:, j].tolist(), abs=True).amax(1).detach()
                            for j in range(k)]).cpu().numpy()
    theirs = add("captum.saliency", captum_sal)
    rows["captum.saliency"]["min_corr"] = min_corr(sal, theirs)
    sg = as_stack(add("wsss.smoothgrad", ours("smoothgrad", samples=samples, chunk_size=samples)))
    nt = NoiseTunnel(cs)
    std = [0.15 * float(x[i].max() - x[i].min()) for i in range(b)]

    def captum_sg():
        outs = []
        for j in range(k):
            outs.append(torch.cat([  # captum takes one stdev per input tensor: per image when they differ
                nt.attribute(x[i : i + 1], nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples,
                             stdevs=std[i], target=int(slots[i, j]), abs=True).amax(1).detach()
                for i in range(b)]) if len(set(std)) > 1 else
                nt.attribute(x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples,
                             stdevs=std[0], target=slots[:, j].tolist(), abs=True).amax(1).detach())
        return torch.stack(outs).cpu().numpy()
    theirs = add("captum.smoothgrad", captum_sg)
    rows["captum.smoothgrad"]["min_corr"] = min_corr(sg, theirs)  # different noise: not expected to be 1

    # -- jigsaw vs the floor (per sample . class) -------------------------------------------------------------
    for mode in ("loop", "batched"):
        add(f"wsss.jigsaw.{mode}", ours("jigsaw", samples=samples, chunk_size=samples, backward=mode), memory=False)
    add("floor", floor_fn(model, x.repeat_interleave(samples, 0), k, amp), memory=False)
    return {"k": k, "batch": b, "size": [h, w], "num_classes": labels.shape[1], "samples": samples, "rows": rows}


def ratios(cell: dict) -> dict:
    r = {key: v["seconds"] for key, v in cell["rows"].items()}
    n, k, b = cell["samples"], cell["k"], cell["batch"]
    floor_sc = r["floor"] / (b * n * k)  # floor seconds per (sample . class)
    out = {
        "gradcam_speedup_vs_pytorch_grad_cam": r["pytorch-grad-cam.gradcam"] / r["wsss.gradcam"],
        "gradcampp_speedup_vs_pytorch_grad_cam": r["pytorch-grad-cam.gradcampp"] / r["wsss.gradcampp"],
        "gradcam_speedup_vs_captum": r["captum.layergradcam"] / r["wsss.gradcam"],
        "saliency_speedup_vs_captum": r["captum.saliency"] / r["wsss.saliency"],
        "smoothgrad_speedup_vs_captum": r["captum.smoothgrad"] / r["wsss.smoothgrad"],
        "jigsaw_loop_over_floor": r["wsss.jigsaw.loop"] / r["floor"],
        "jigsaw_batched_over_floor": r["wsss.jigsaw.batched"] / r["floor"],
        "smoothgrad_over_floor": r["wsss.smoothgrad"] / r["floor"],
        "floor_seconds_per_sample_class": floor_sc,
    }
    if "wsss.gradcam.dense" in r:
        out["gradcam_dense_over_compact"] = r["wsss.gradcam.dense"] / r["wsss.gradcam"]
        out["cam_dense_over_compact"] = r["wsss.cam.dense"] / r["wsss.cam"]
    return out


def marginal(cells: list[dict]) -> dict:
    """Marginal cost of the 2nd and the 4th class (jigsaw, both backward modes), per sample, over the floor's
    cost of one class (one forward + one backward)."""
    by_k = {c["k"]: c for c in cells}
    out = {}
    if not all(k in by_k for k in KS):
        return out
    one = by_k[1]["rows"]["floor"]["seconds"]  # one forward + one backward
    for mode in ("loop", "batched"):
        t = {k: by_k[k]["rows"][f"wsss.jigsaw.{mode}"]["seconds"] for k in KS}
        out[f"jigsaw.{mode}.2nd_class_over_floor_class"] = (t[2] - t[1]) / one
        out[f"jigsaw.{mode}.4th_class_over_floor_class"] = (t[4] - t[2]) / 2 / one
    return out


def format_table(res: dict) -> str:
    lines = [f"wsss vs pytorch-grad-cam / captum, {res['device']}{' bf16' if res['amp'] else ''}, "
             f"{res['threads']} threads, load {res['load_before']} -> {res['load_after']}"]
    for model, cells in res["models"].items():
        lines.append(f"\n== {model}: {cells[0]['batch']} image(s) {cells[0]['size'][0]}x{cells[0]['size'][1]}, "
                     f"K = {cells[0]['num_classes']}, N = {cells[0]['samples']} samples")
        head = f"{'method':<30}" + "".join(f"{'k=' + str(c['k']) + ' s/img':>13}{'peak MB':>9}" for c in cells)
        head += f"{'min corr':>10}"
        lines.append(head)
        for key in cells[0]["rows"]:
            row = f"{key:<30}"
            for c in cells:
                v = c["rows"].get(key, {})
                pk = v.get("peak_bytes")
                row += f"{v.get('seconds_per_image', float('nan')):>13.4f}"
                row += f"{pk / 2**20:>9.1f}" if pk is not None else f"{'':>9}"
            cs = [c["rows"].get(key, {}).get("min_corr") for c in cells]
            if any(v is not None for v in cs):
                row += f"{min(v for v in cs if v is not None):>10.4f}"
            lines.append(row)
        lines.append("ratios (speed-up = their time / ours; 'over floor' per (sample . class)):")
        for c in cells:
            lines.append(f"  k={c['k']}: " + ", ".join(f"{n} {v:.2f}" for n, v in c["ratios"].items()
                                                       if "seconds" not in n))
        if res["marginal"].get(model):
            lines.append("  marginal class cost / floor one-class cost: " +
                         ", ".join(f"{n} {v:.2f}" for n, v in res["marginal"][model].items()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["smallcnn", "resnet50", "lite0"])
    ap.add_argument("--ks", nargs="+", type=int, default=list(KS))
    ap.add_argument("--repeats", type=int, default=2, help="timed calls after a warm-up; the best is kept")
    ap.add_argument("--samples", type=int, default=None,
                    help="SmoothGrad / jigsaw samples (default: 8 on smallcnn, 4 on ResNet-50 and Lite0)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for the wsss calls (GPU)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    res = {"device": str(device), "amp": args.amp, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.platform(), "load_before": os.getloadavg()[0], "repeats": args.repeats,
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "models": {}, "marginal": {}}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
    out = Path(args.out) if args.out else RESULTS / f"vs_references_{device.type}{'_bf16' if args.amp else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for name in args.models:
        samples = args.samples or (8 if name == "smallcnn" else 4)
        cells = []
        for k in args.ks:
            cell = run_cell(name, k, device, args.repeats, samples, args.amp)
            cell["ratios"] = ratios(cell)
            cells.append(cell)
            print(f"[{time.time() - t0:6.0f}s] {name} k={k}: " + ", ".join(
                f"{n} {v:.2f}" for n, v in cell["ratios"].items() if "seconds" not in n), flush=True)
            res["models"][name] = cells
            res["marginal"][name] = marginal(cells)
            res["load_after"] = os.getloadavg()[0]
            res["wall_seconds"] = time.time() - t0
            out.write_text(json.dumps(res, indent=1) + "\n")  # after every cell: a long run keeps what it did
    print(format_table(res))
    print(f"-> {out}")
    return res


if __name__ == "__main__":
    # freed tensors must leave the resident set for the peak-memory figures: a static mmap threshold (set
    # before the process starts) makes glibc map every large block and unmap it on free
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    main()
