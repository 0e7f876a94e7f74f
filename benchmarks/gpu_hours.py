"""Expected GPU hours for the real-data presets, on paper, from measured per-image costs.

Reads a ``wsss bench`` JSON measured on a GPU (default: the lent H200, ResNet-50 at 320 px) and scales it
to VOC 2012 / COCO 2014 under stated assumptions: cost proportional to pixels, the IRN / AMN protocol of
``configs/*.yaml`` (classifier crops of 512 px, 5 epochs; maps at 4 scales (1.0, 0.5, 1.5, 2.0) + flip =
15 single-scale passes in pixels), perfect scaling over GPUs (the maps are sharded by image; DDP training
adds communication, so the 8-GPU training rows are a lower bound). Data loading, CRF, scoring and the
segmenter are not included.

    python benchmarks/gpu_hours.py [benchmarks/results/localizers_resnet50_cuda_h200.json] > benchmarks/results/gpu_hours.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATASETS = {
    # name: (classifier/AMN training images, images that get maps (score + tune splits), mean pixels/image)
    "VOC 2012 (train_aug 10,582; maps on train 1,464 + tune 1,464)": (10_582, 2_928, 500 * 375),
    "COCO 2014 (train 82,081; maps on train 82,081)": (82_081, 82_081, 640 * 480),
}
EPOCHS = 5
CROP = 512
MULTISCALE_PIXELS = sum(2 * s * s for s in (1.0, 0.5, 1.5, 2.0))  # 4 scales x flip, relative to 1.0
METHODS = ("cam", "saliency", "cropsal", "jigsaw", "jigsaw-cam")


def main(path: str) -> None:
    bench = json.loads(Path(path).read_text())
    base_px = bench["size"] ** 2
    lines = [
        f"# Expected GPU hours (on paper) from `{path}`",
        "",
        f"Measured on: {bench.get('device')} ({bench.get('machine', '?')}), {bench['arch']} at "
        f"{bench['size']} px, torch {bench.get('torch')}; N = {bench.get('samples')} samples for the sampling "
        "methods. Scaled by pixels; maps with 4 scales x flip; training crops of 512 px, 5 epochs. "
        "Command: `python benchmarks/gpu_hours.py`.",
        "",
        "| dataset | stage | 1 GPU (h) | 8 GPUs (h) |",
        "|---|---|---|---|",
    ]
    for name, (n_train, n_maps, px) in DATASETS.items():
        train_s = bench["train_step_seconds_per_image"] * (CROP * CROP / base_px) * n_train * EPOCHS
        lines.append(f"| {name} | classifier ({EPOCHS} epochs) | {train_s / 3600:.2f} | {train_s / 3600 / 8:.2f} |")
        cam_all = bench["methods"]["cam"]["seconds_per_image"] * (px / base_px) * MULTISCALE_PIXELS * n_train
        lines.append(f"| {name} | maps: cam on every training image (AMN labels) | {cam_all / 3600:.2f} | "
                     f"{cam_all / 3600 / 8:.2f} |")
        lines.append(f"| {name} | AMN ({EPOCHS} epochs; proxy: the classifier's step cost) | {train_s / 3600:.2f} | "
                     f"{train_s / 3600 / 8:.2f} |")
        for m in METHODS:
            spi = bench["methods"].get(m, {}).get("seconds_per_image")
            if spi is None:
                continue
            s = spi * (px / base_px) * MULTISCALE_PIXELS * n_maps
            lines.append(f"| {name} | maps: {m} | {s / 3600:.2f} | {s / 3600 / 8:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/localizers_resnet50_cuda_h200.json")
