"""Localizers: golden values on tiny hand-built models, oracles (captum, pytorch-grad-cam) and invariants
looped over the whole registry."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wsss.localize as L
from wsss.errors import ConfigError, WsssError
from wsss.localize.base import MultiScale
from wsss.localize.fusion import region_from_cam
from wsss.models import CamClassifier, Normalize, create
from wsss.shuffle import coverage, random_plans

K = 3
SIZE = 24

# Every method of the registry (third-party ones of the `wsss.methods` entry points included, e.g. the toy
# method of tests/plugin), read from the specs: nothing here lists method names.
SPECS = [s for s in L.specs() if s.requires == "classifier"]  # AMN needs a trained AMN (tests/test_amn.py)
METHODS = [s.name for s in SPECS]
STOCHASTIC = {s.name for s in SPECS if s.stochastic}
# a fusion passes sample options on to its filler
CHUNKED = [s.name for s in SPECS if s.stochastic and (s.is_fusion or "chunk_size" in s.defaults())]
# small options so that every sampling method runs in milliseconds
OPTIONS = {name: dict(samples=3) for name in CHUNKED}


def tiny_model(k: int = K, seed: int = 0, pool: int = 1, width: int = 4) -> CamClassifier:
    """Identity normalization, one 3x3 conv, ReLU (optional average pool): stride ``pool``."""
    layers: list[tuple[str, nn.Module]] = [
        ("normalize", Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))),
        ("conv", nn.Conv2d(3, width, 3, padding=1)),
        ("relu", nn.ReLU()),
    ]
    if pool > 1:
        layers.append(("pool", nn.AvgPool2d(pool)))
    model = CamClassifier(nn.Sequential(OrderedDict(layers)), width, k, stride=pool)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def golden_model() -> CamClassifier:
    """features = AvgPool2(ReLU([R, G])) (stride 2), classifier rows [2, -1] and [-1, 1]."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    ident = Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    feats = nn.Sequential(ident, conv, nn.ReLU(), nn.AvgPool2d(2))
    model = CamClassifier(feats, 2, 2, stride=2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
        model.classifier.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 1.0]]).view(2, 2, 1, 1))
    return model.eval()


def golden_image() -> torch.Tensor:
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = torch.arange(16.0).view(4, 4) / 16
    x[0, 1] = 0.5
    return x


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return create("smallcnn", K).eval()


def images(b: int = 2, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def input_grad(model: nn.Module, x: torch.Tensor, c: int) -> torch.Tensor:
    """d s_c / d x by hand (model in eval mode)."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, c].sum(), x)
    return g


# ----------------------------------------------------------------------------------------------------------
# CAM family: golden values


def test_cam_golden_values():
    model, x = golden_model(), golden_image()
    maps = L.create("cam", model).attribute(x, torch.ones(1, 2))
    # feature map by hand: d0 = block means of R, d1 = 0.5
    d0 = torch.tensor([[2.5, 4.5], [10.5, 12.5]]) / 16
    low = torch.stack([(2 * d0 - 0.5).relu(), (0.5 - d0).relu()])  # ReLU before upsampling
    assert torch.allclose(low, torch.tensor([[[0, 0.0625], [0.8125, 1.0625]], [[0.34375, 0.21875], [0, 0]]]))
    expected = F.interpolate(low[None], size=(4, 4), mode="bilinear", align_corners=False)
    assert maps.shape == (1, 2, 4, 4) and maps.dtype == torch.float32
    assert torch.allclose(maps, expected, atol=1e-7)
    # bilinear (align_corners=False) by hand on a few pixels
    assert maps[0, 0, 0, 0] == 0 and maps[0, 0, 3, 3] == 1.0625 and maps[0, 1, 0, 0] == 0.34375
    assert maps[0, 0, 1, 1].item() == pytest.approx(0.23046875, abs=1e-7)
    assert maps[0, 0, 1, 2].item() == pytest.approx(0.28515625, abs=1e-7)


def test_cam_equals_einsum_by_hand(small):
    x = images()
    maps = L.create("cam", small).attribute(x, torch.ones(2, K))
    with torch.no_grad():
        feats = small.features(x)
        cams = torch.einsum("kd,bdhw->bkhw", small.classifier.weight[:, :, 0, 0], feats).relu()
    assert feats.shape[-1] == SIZE // small.stride
    assert torch.allclose(maps, F.interpolate(cams, size=(SIZE, SIZE), mode="bilinear", align_corners=False),
                          atol=1e-6)


@pytest.mark.parametrize("model_fn", [golden_model, lambda: tiny_model(pool=2)])
def test_gradcam_at_last_layer_is_cam_over_hw(model_fn):
    model = model_fn()
    x = golden_image() if model.num_classes == 2 else images()
    labels = torch.ones(x.shape[0], model.num_classes)
    cam = L.create("cam", model).attribute(x, labels)
    gc = L.create("gradcam", model, layer="features").attribute(x, labels)
    h, w = model.features(x).shape[-2:]
    assert cam.abs().sum() > 0
    assert torch.allclose(gc, cam / (h * w), atol=1e-7, rtol=1e-5)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.flatten(-2).amin(-1)[..., None, None]
    hi = m.flatten(-2).amax(-1)[..., None, None]
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def test_gradcam_earlier_layer_runs_and_differs(small):
    x, labels = images(), torch.ones(2, K)
    cam = L.create("cam", small).attribute(x, labels)
    last = L.create("gradcam", small, layer="features").attribute(x, labels)
    early = L.create("gradcam", small, layer="features.stage2").attribute(x, labels)
    h = SIZE // small.stride
    assert torch.allclose(last, cam / (h * h), atol=1e-6, rtol=1e-4)
    assert early.shape == cam.shape and torch.isfinite(early).all() and early.sum() > 0
    assert not torch.allclose(_minmax(early), _minmax(last), atol=1e-2)


def _acts_and_grads(model, layer, x, c):
    store = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: store.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(logits[:, c].sum(), store[0])
    return store[0].detach(), g


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_gradcam_family_against_pytorch_grad_cam(method, small):
    gcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    oracle_cls = {"gradcam": gcam.GradCAM, "gradcampp": gcam.GradCAMPlusPlus}[method]
    cases = [(tiny_model(), "features", images(seed=1)), (small, "features.stage3", images(seed=2, size=32))]
    nonzero = 0
    for model, layer, x in cases:
        # pytorch-grad-cam adds eps = 1e-6 to the Grad-CAM++ denominator 2 g^2 + sum(F) g^3; behind a GAP head
        # g ~ 1e-3, so that eps would dominate: scale the logits (and so g) by 1e3 to compare the formula
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.classifier.weight.mul_(1e3)
        ours = L.create(method, model, layer=layer)
        for c in range(K):
            # the channel weights themselves, in float64, g scaled up so that the eps vanishes
            acts, grads = _acts_and_grads(model, layer, x.clone(), c)
            acts, grads = acts.double(), grads.double() * 1e6
            theirs_w = oracle_cls.get_cam_weights(None, x, None, None, acts.numpy(), grads.numpy())
            assert np.allclose(ours.weights(grads, acts).numpy(), theirs_w, rtol=1e-9, atol=0)
            # the maps: pytorch-grad-cam ReLUs, min-max normalizes per image and resizes (cv2, bilinear,
            # half-pixel) to the input size, then min-max normalizes again; compare after min-max
            twin = copy.deepcopy(model)  # it calls model.eval(), registers hooks and fills parameter .grad
            with oracle_cls(model=twin, target_layers=[twin.get_submodule(layer)]) as oracle:
                theirs = oracle(input_tensor=x.clone(), targets=[ClassifierOutputTarget(c)] * x.shape[0])
            mine = ours.attribute(x, torch.ones(x.shape[0], K))[:, c]
            nonzero += int(mine.sum() > 0)
            assert np.allclose(_minmax(mine).numpy(), theirs, atol=1e-5), (layer, c)
    assert nonzero >= K


def test_gradcampp_weights_by_hand():
    g = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]])
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # sum 10
    alpha = g**2 / (2 * g**2 + 10 * g**3)
    alpha = torch.where(g == 0, torch.zeros_like(alpha), alpha)
    expected = (alpha * g.relu()).sum()
    w = L.GradCAMPlusPlus(tiny_model()).weights(g, a)
    assert w.shape == (1, 1) and w.item() == pytest.approx(expected.item())
    assert w.item() == pytest.approx(1 / 12 + 0.5 * 0.25 / 1.75)  # g = 1 and g = 0.5; g = -2 is cut by ReLU


# ----------------------------------------------------------------------------------------------------------
# gradient core: golden values, finite differences, captum


def test_saliency_against_central_finite_differences(small):
    x = images(b=1, size=16, seed=3)
    c = 1
    ours = L.create("saliency", small).attribute(x, torch.ones(1, K))[0, c]
    m64 = copy.deepcopy(small).double().eval()
    x64 = x.double()
    eps = 1e-6
    pixels = [(0, 0), (3, 7), (8, 8), (15, 2), (11, 15)]
    with torch.no_grad():
        for i, j in pixels:
            fd = []
            for ch in range(3):
                plus, minus = x64.clone(), x64.clone()
                plus[0, ch, i, j] += eps
                minus[0, ch, i, j] -= eps
                fd.append(((m64(plus)[0, c] - m64(minus)[0, c]) / (2 * eps)).abs().item())
            assert max(fd) > 0
            assert ours[i, j].item() == pytest.approx(max(fd), rel=1e-3, abs=1e-8), (i, j)
    # the float64 core (the public attribute casts images to float32) matches to float64 precision
    core = L.create("saliency", m64)._attribute(x64, torch.ones(1, K, dtype=torch.float64), [0])[0, c]
    assert core.dtype == torch.float64
    assert torch.allclose(core, input_grad(m64, x64, c)[0].abs().amax(0), rtol=1e-12, atol=0)
    assert torch.allclose(ours.double(), core, rtol=1e-4, atol=1e-9)


def test_reductions_and_prob_weighting_by_hand():
    model, x = tiny_model(), images(b=2)
    labels = torch.ones(2, K)
    for c in range(K):
        g = input_grad(model, x, c)
        with torch.no_grad():
            p = torch.sigmoid(model(x)[:, c])[:, None, None]
        expected = {
            "absmax": g.abs().amax(1),
            "gradxinput": (g * x).sum(1).abs(),
            "l2": g.pow(2).sum(1).sqrt(),
        }
        for red, exp in expected.items():
            got = L.create("saliency", model, reduction=red).attribute(x, labels)[:, c]
            assert torch.allclose(got, exp, rtol=1e-5, atol=1e-9), red
        got = L.create("saliency", model, weighting="prob").attribute(x, labels)[:, c]
        assert torch.allclose(got, p * expected["absmax"], rtol=1e-5, atol=1e-9)


def test_smoothing_is_a_gaussian_blur_of_the_final_map():
    from torchvision.transforms.functional import gaussian_blur

    model, x, labels = tiny_model(), images(), torch.tensor([[1.0, 1, 0], [0, 1, 1]])
    plain = L.create("saliency", model).attribute(x, labels)
    smoothed = L.create("saliency", model, smooth_sigma=1.0).attribute(x, labels)
    expected = gaussian_blur(plain.view(-1, 1, SIZE, SIZE), [7, 7], [1.0, 1.0]).view_as(plain)
    assert torch.allclose(smoothed, expected, rtol=1e-5, atol=1e-8)
    assert not torch.allclose(smoothed, plain)


def test_saliency_against_captum(small):
    pytest.importorskip("captum")
    from captum.attr import Saliency as CaptumSaliency

    for model in (tiny_model(), small):
        x = images(seed=4)
        ours = L.create("saliency", model).attribute(x, torch.ones(2, K))
        for c in range(K):
            theirs = CaptumSaliency(model).attribute(x.clone().requires_grad_(True), target=c, abs=True).amax(1)
            assert torch.allclose(ours[:, c], theirs, rtol=1e-6, atol=1e-9)
        assert all(p.grad is None for p in model.parameters())


def _smoothgrad_noise(loc, image_id, n, shape):
    gen = loc.generator(image_id)
    return torch.stack([torch.randn(shape, generator=gen) for _ in range(n)])


def test_smoothgrad_by_hand_with_the_same_noise():
    model, x = tiny_model(), images(b=2)
    n, sigma = 5, 0.2
    loc = L.create("smoothgrad", model, samples=n, sigma=sigma, seed=3, chunk_size=2)
    maps = loc.attribute(x, torch.ones(2, K), ids=["a", "b"])
    for b, image_id in enumerate(["a", "b"]):
        noise = _smoothgrad_noise(loc, image_id, n, x.shape[1:])
        std = sigma * (x[b].max() - x[b].min())
        for c in range(K):
            grads = torch.stack([input_grad(model, (x[b] + noise[s] * std)[None], c)[0] for s in range(n)])
            assert torch.allclose(maps[b, c], grads.abs().mean(0).amax(0), rtol=1e-5, atol=1e-9)


def test_smoothgrad_against_captum_noise_tunnel(small, monkeypatch):
    pytest.importorskip("captum")
    from captum.attr import NoiseTunnel
    from captum.attr import Saliency as CaptumSaliency

    x = images(b=1, seed=5)
    n, sigma = 4, 0.15
    loc = L.create("smoothgrad", small, samples=n, sigma=sigma, seed=7)
    ours = loc.attribute(x, torch.ones(1, K), ids=["img"])
    std = (sigma * (x[0].max() - x[0].min())).item()  # the same float32 value our views() uses
    noise = _smoothgrad_noise(loc, "img", n, x.shape[1:])

    def same_noise(mean, stdev, *args, **kwargs):  # captum draws with torch.normal(0, stdev) from global RNG
        assert stdev.shape == noise.shape
        return noise * stdev

    monkeypatch.setattr(torch, "normal", same_noise)
    for c in range(K):
        nt = NoiseTunnel(CaptumSaliency(small))
        theirs = nt.attribute(x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=n, stdevs=std, target=c, abs=True)
        assert torch.allclose(ours[0, c], theirs[0].amax(0), rtol=1e-5, atol=1e-9)


def test_cropsal_by_hand():
    # three random crops: each view is resize(crop(x)); per pixel, the mean over the views whose crop covers it
    model, x = tiny_model(), images(b=1, size=20)
    n = 3
    loc = L.create("cropsal", model, samples=n, include_full=False, seed=2)
    maps = loc.attribute(x, torch.ones(1, K), ids=[0])
    boxes = loc.boxes(n, 0, 20, 20, loc.generator(0))
    total, count = torch.zeros(K, 3, 20, 20), torch.zeros(20, 20)
    for y0, x0, ch, cw in boxes:
        assert (ch, cw) != (20, 20)
        leaf = x.clone().requires_grad_(True)
        view = F.interpolate(leaf[:, :, y0 : y0 + ch, x0 : x0 + cw], size=(20, 20), mode="bilinear",
                             align_corners=False)
        out = model(view)
        for c in range(K):
            (g,) = torch.autograd.grad(out[0, c], leaf, retain_graph=True)
            total[c] += g[0].abs()
        count[y0 : y0 + ch, x0 : x0 + cw] += 1
    assert count.max() > 1 and (count == 0).any()  # overlapping crops, and pixels no crop covers
    expected = torch.where(count > 0, (total / count.clamp_min(1)).amax(1), torch.zeros(()))
    assert torch.allclose(maps[0], expected, rtol=1e-5, atol=1e-9)


def test_single_view_methods_equal_saliency(small):
    x, labels = images(), torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    ref = L.create("saliency", small).attribute(x, labels)
    jig = L.create("jigsaw", small, samples=1, grids=(1,), offsets=False).attribute(x, labels)
    crop = L.create("cropsal", small, samples=1, include_full=True).attribute(x, labels)
    intact = L.create("jigsaw", small, samples=1, include_intact=True).attribute(x, labels)
    assert ref.sum() > 0
    for other in (jig, crop, intact):
        assert torch.allclose(other, ref, rtol=1e-5, atol=1e-9)


def test_shufflecam_identity_shuffle_equals_cam(small):
    x, labels = images(size=32), torch.ones(2, K)
    ref = L.create("cam", small).attribute(x, labels)
    got = L.create("shufflecam", small, samples=2, grids=(1,), offsets=False).attribute(x, labels)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_jigsaw_on_a_pointwise_model_is_saliency_where_covered():
    # receptive field 1 x 1 + GAP + linear: a pixel's gradient does not depend on where its patch goes
    # (no feature sees across a patch border and the pooling ignores position), so every view that shows
    # the pixel gives the saliency value
    feats = nn.Sequential(Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), nn.Conv2d(3, 5, 1), nn.Tanh())
    model = CamClassifier(feats, 5, K, stride=1).eval()
    x, labels = images(b=1, size=18, seed=6), torch.ones(1, K)
    loc = L.create("jigsaw", model, samples=2, grids=(4,), offsets=True, seed=1)
    maps = loc.attribute(x, labels, ids=["p"])
    seen = coverage(loc.plans(2, 0, 18, 18, loc.generator("p")), 18, 18).sum(0) > 0
    assert not seen.all()  # offsets + padding push some pixels out of some views ...
    ref = L.create("saliency", model).attribute(x, labels)
    assert torch.allclose(maps[0][:, seen], ref[0][:, seen], rtol=1e-5, atol=1e-9)
    assert torch.all(maps[0][:, ~seen] == 0)  # ... and a pixel never seen gets 0, not NaN


def test_shufflecam_on_a_pointwise_model_is_cam_where_covered():
    # with a 1 x 1 receptive field the CAM of a shuffled image, un-shuffled, is the CAM of the image
    feats = nn.Sequential(Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), nn.Conv2d(3, 5, 1), nn.Tanh())
    model = CamClassifier(feats, 5, K, stride=1).eval()
    x, labels = images(b=1, size=18, seed=9), torch.ones(1, K)
    loc = L.create("shufflecam", model, samples=2, grids=(4,), offsets=True, seed=3)
    maps = loc.attribute(x, labels, ids=["q"])
    plans = random_plans(18, 18, 2, (4,), loc.generator("q"), True, align=1)
    seen = coverage(plans, 18, 18).sum(0) > 0
    assert not seen.all() and not torch.equal(plans[0], torch.arange(18 * 18))
    ref = L.create("cam", model).attribute(x, labels)
    assert ref.sum() > 0
    assert torch.allclose(maps[0][:, seen], ref[0][:, seen], rtol=1e-5, atol=1e-7)
    assert torch.all(maps[0][:, ~seen] == 0)


def test_jigsaw_cam_is_zero_outside_the_dilated_cam_region(small):
    x, labels = images(size=32, seed=8), torch.ones(2, K)
    maps = L.create("jigsaw-cam", small, samples=2, dilation=2, seed_threshold=0.7, fusion="region").attribute(
        x, labels)
    region = region_from_cam(L.create("cam", small).attribute(x, labels), 0.7, 2)
    assert 0 < region.mean() < 1  # the check is not vacuous
    assert torch.all(maps[region == 0] == 0)
    assert maps[region > 0].sum() > 0 and maps.max() <= 1


def test_jigsaw_cam_geo_fusion_is_the_geometric_mean(small):
    x, labels = images(size=32, seed=8), torch.ones(2, K)
    maps = L.create("jigsaw-cam", small, samples=2, seed=3).attribute(x, labels)
    cam = L.create("cam", small).attribute(x, labels)
    jig = L.create("jigsaw", small, samples=2, seed=3).attribute(x, labels)
    cam = cam / cam.flatten(2).amax(2).clamp_min(1e-12)[:, :, None, None]
    jig = (jig / torch.quantile(jig.flatten(2), 0.99, dim=2).clamp_min(1e-12)[:, :, None, None]).clamp(max=1)
    torch.testing.assert_close(maps, torch.sqrt(cam * jig))
    assert torch.all(maps[cam == 0] == 0)  # no class evidence, no mask


def test_multiscale_single_scale_equals_inner(small):
    x, labels = images(), torch.ones(2, K)
    for name in ("cam", "saliency", "gradcam"):
        inner = L.create(name, small)
        assert torch.allclose(MultiScale(inner, scales=(1.0,), flip=False).attribute(x, labels),
                              inner.attribute(x, labels), rtol=1e-6, atol=1e-9), name
    # a stochastic inner localizer sees the view id "<id>|<scale>|<flipped>"
    inner = L.create("jigsaw", small, samples=2)
    got = MultiScale(inner, scales=(1.0,), flip=False).attribute(x, labels, ids=["u", "v"])
    assert torch.allclose(got, inner.attribute(x, labels, ids=["u|1.0|0", "v|1.0|0"]), rtol=1e-6, atol=1e-9)
    # flip: the map of the flipped image, flipped back, is added
    cam = L.create("cam", small)
    both = MultiScale(cam, scales=(1.0,), flip=True).attribute(x, labels)
    expected = cam.attribute(x, labels) + cam.attribute(x.flip(-1), labels).flip(-1)
    assert torch.allclose(both, expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# invariants over the whole registry


def _make(name, model, **extra):
    return L.create(name, model, **{**OPTIONS.get(name, {}), **extra})


def _hooks(model: nn.Module) -> list:
    """Every hook registered on the model: module hook dicts (forward, pre, backward, state-dict ...) and
    tensor hooks on the parameters."""
    found = []
    for name, m in model.named_modules():
        for attr, value in vars(m).items():
            if attr.endswith("hooks") and isinstance(value, dict) and value:
                found.append((name, attr))
    found += [name for name, p in model.named_parameters() if p._backward_hooks]
    return found


def _global_hooks():
    mod = nn.modules.module
    return len(mod._global_forward_hooks), len(mod._global_backward_hooks), len(mod._global_forward_pre_hooks)


@pytest.mark.parametrize("name", METHODS)
def test_registry_contract(name, small):
    model = copy.deepcopy(small)
    # an unusual state that must come back exactly: train mode with one eval submodule, a frozen stem
    model.train()
    model.features.stage1.eval()
    for p in model.features.stem.parameters():
        p.requires_grad_(False)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    weights = {n: t.clone() for n, t in model.state_dict().items()}
    assert _hooks(model) == []
    global_hooks = _global_hooks()

    x = images()
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    maps = _make(name, model, seed=1).attribute(x, labels, ids=["a", "b"])

    assert maps.shape == (2, K, SIZE, SIZE) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert torch.all(maps[labels == 0] == 0)
    assert maps[labels > 0].sum() > 0
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == []
    assert _global_hooks() == global_hooks
    assert all(torch.equal(weights[n], t) for n, t in model.state_dict().items())  # BN stats untouched

    # same seed and ids -> identical; another seed -> different for the stochastic methods only
    model.eval()
    again = _make(name, model, seed=1).attribute(x, labels, ids=["a", "b"])
    assert torch.equal(again, maps)
    other = _make(name, model, seed=2).attribute(x, labels, ids=["a", "b"])
    assert torch.equal(other, maps) == (name not in STOCHASTIC)

    # randomness comes from (seed, image id): the same image under two ids differs, under one id it does not
    twice = x[[0, 0]], labels[[0, 0]]
    same = _make(name, model, seed=1).attribute(*twice, ids=["a", "a"])
    assert torch.allclose(same[0], same[1], rtol=1e-5, atol=1e-7)
    assert torch.allclose(same[0], maps[0], rtol=1e-5, atol=1e-7)
    two = _make(name, model, seed=1).attribute(*twice, ids=["a", "z"])
    assert torch.equal(two[0], two[1]) == (name not in STOCHASTIC)

    # a batch equals each image alone with the same id
    for i, image_id in enumerate(["a", "b"]):
        alone = _make(name, model, seed=1).attribute(x[i : i + 1], labels[i : i + 1], ids=[image_id])
        assert torch.allclose(alone[0], maps[i], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", CHUNKED)
def test_chunked_equals_unchunked(name, small):
    x, labels = images(), torch.tensor([[1.0, 1, 0], [0, 1, 1]])
    n = 4
    one = _make(name, small, samples=n, chunk_size=1).attribute(x, labels)
    all_ = _make(name, small, samples=n, chunk_size=n).attribute(x, labels)
    assert one.sum() > 0
    assert torch.allclose(one, all_, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", METHODS)
def test_zero_classifier_gives_zero_maps(name):
    model = tiny_model(pool=2)
    with torch.no_grad():
        model.classifier.weight.zero_()
    maps = _make(name, model).attribute(images(), torch.ones(2, K))
    assert torch.isfinite(maps).all() and torch.all(maps == 0)


@pytest.mark.parametrize("name", METHODS)
def test_no_present_class_and_unknown_option(name, small):
    maps = _make(name, small).attribute(images(b=1), torch.zeros(1, K))
    assert maps.shape == (1, K, SIZE, SIZE) and torch.all(maps == 0)
    with pytest.raises((TypeError, WsssError)):
        L.create(name, small, no_such_option=1)


def test_unknown_method_and_bad_inputs(small):
    with pytest.raises(ConfigError, match="unknown method"):
        L.create("no-such-method", small)
    loc = L.create("cam", small)
    with pytest.raises(ValueError):
        loc.attribute(torch.rand(1, 1, 8, 8), torch.ones(1, K))
    with pytest.raises(ValueError):
        loc.attribute(torch.rand(2, 3, 8, 8), torch.ones(1, K))


# ---- compact maps (the present classes only) and one backward for all classes ------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_compact_equals_dense(name, small):
    """``compact=True`` gives the dense maps of the present classes, slot by slot (a third-party method that only
    implements the dense ``_attribute`` gets it too), with -1 padding slots of zeros."""
    x = images(b=3)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 0]])
    dense = _make(name, small, seed=3).attribute(x, labels, ids=["a", "b", "c"])
    res = _make(name, small, seed=3).attribute(x, labels, ids=["a", "b", "c"], compact=True)
    assert isinstance(res, L.ClassMaps)
    assert res.classes.tolist() == [[0, 2], [1, -1], [-1, -1]]
    assert res.maps.shape == (3, 2, SIZE, SIZE) and res.maps.dtype == torch.float32
    assert torch.all(res.maps[res.classes < 0] == 0)
    assert torch.allclose(res.dense(K), dense, rtol=1e-5, atol=1e-7)
    maps1, cls1 = res.image(1)
    assert cls1.tolist() == [1] and torch.allclose(maps1[0], dense[1, 1], rtol=1e-5, atol=1e-7)
    none = _make(name, small).attribute(x[:1], torch.zeros(1, K), compact=True)
    assert none.maps.shape == (1, 0, SIZE, SIZE) and none.classes.shape == (1, 0)


def test_slot_classes_and_scatter():
    labels = torch.tensor([[0.0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    slots = L.slot_classes(labels)
    assert slots.tolist() == [[1, 2], [0, -1], [-1, -1]]
    maps = torch.rand(3, 2, 4, 5) * (slots >= 0)[:, :, None, None]
    dense = L.scatter_slots(maps, slots, 4)
    assert torch.equal(dense[0, 1], maps[0, 0]) and torch.equal(dense[0, 2], maps[0, 1])
    assert torch.equal(dense[1, 0], maps[1, 0]) and dense[2].sum() == 0 and dense[:, 3].sum() == 0
    assert torch.equal(L.pick(dense, slots)[slots >= 0], maps[slots >= 0])


def test_compact_cam_never_builds_all_classes_at_full_size():
    """K = 1000 with 2 present classes: the compact CAM result holds 2 maps, not 1000."""
    torch.manual_seed(0)
    model = create("smallcnn", 1000).eval()
    labels = torch.zeros(1, 1000)
    labels[0, [7, 900]] = 1
    res = L.create("cam", model).attribute(images(b=1, size=64), labels, compact=True)
    assert res.maps.shape == (1, 2, 64, 64) and res.classes.tolist() == [[7, 900]]


BATCHED = [(m, "features") for m in ("saliency", "smoothgrad", "cropsal", "jigsaw", "gradcam", "gradcampp")]


@pytest.mark.parametrize("name,layer", [*BATCHED, ("gradcam", "features.stage2"), ("gradcampp", "features.stage2")])
def test_batched_backward_equals_loop(name, layer, small):
    """One vmapped backward for every class slot gives the maps of one backward per slot."""
    extra = {"layer": layer} if name.startswith("gradcam") else {"samples": 3, "chunk_size": 2, "seed": 1}
    x = images(b=3)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 1]])
    loop = L.create(name, small, backward="loop", **extra).attribute(x, labels, ids=["a", "b", "c"])
    batched = L.create(name, small, backward="batched", **extra).attribute(x, labels, ids=["a", "b", "c"])
    assert loop.sum() > 0
    assert torch.allclose(batched, loop, rtol=1e-4, atol=1e-6 * float(loop.max()))
    with pytest.raises(ConfigError):
        L.create(name, small, backward="sideways")


def test_auto_backward_is_the_loop_on_one_cpu_thread(small):
    """``backward=auto``: the per-class loop on a CPU with one intra-op thread (faster there), else batched."""
    loc = L.create("jigsaw", small)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not loc._batched(torch.device("cpu"))
        torch.set_num_threads(2)
        assert loc._batched(torch.device("cpu"))
        assert loc._batched(torch.device("cuda"))
    finally:
        torch.set_num_threads(before)
    assert not L.create("jigsaw", small, backward="loop")._batched(torch.device("cuda"))
    assert L.create("jigsaw", small, backward="batched")._batched(torch.device("cpu"))


def test_batched_backward_options_never_change_the_key():
    spec = L.spec("jigsaw")
    assert spec.effective_options({"backward": "batched"}) == spec.effective_options({})


@pytest.mark.parametrize("weighting,reduction", [("prob", "absmax"), ("uniform", "gradxinput"), ("uniform", "l2")])
def test_batched_backward_reductions(weighting, reduction, small):
    x, labels = images(b=2), torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    opts = dict(samples=2, weighting=weighting, reduction=reduction, seed=0)
    loop = L.create("jigsaw", small, backward="loop", **opts).attribute(x, labels)
    batched = L.create("jigsaw", small, backward="batched", **opts).attribute(x, labels)
    assert torch.allclose(batched, loop, rtol=1e-4, atol=1e-6 * float(loop.max()))


def test_multiscale_compact(small):
    x, labels = images(b=2), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    loc = MultiScale(L.create("gradcam", small), scales=(1.0, 0.5), flip=True)
    dense = loc.attribute(x, labels)
    res = loc.attribute(x, labels, compact=True)
    assert torch.allclose(res.dense(K), dense, rtol=1e-5, atol=1e-7)
