"""What the methods' own tests left open under mutation testing (tox -e mutation): the hyperparameter search
distributions, the error messages, GAIN's erased images, its exact-gradient variant and the edges of its losses;
every expectation written out by hand on the closed-form tiny model of test_methods."""

import math

import numpy as np
import pytest
import torch
from test_competitors import scene, small_cnn_scene
from test_methods import by_hand, tiny_batch, tiny_model

from benchmark.execute.methods import build_method
from benchmark.execute.methods.base import HParam, Method, batch_mean_of_image_means
from benchmark.execute.methods.counterfactual import (
    _scale_about_centroid,
    budget_objects,
    gaussian_blur,
    paste_objects,
    remove_objects,
)
from benchmark.execute.methods.gain import GAIN, GAINExt, external_loss, outside_energy_loss
from benchmark.execute.methods.rrr import input_gradient_penalty


def test_hparam_sample_from_each_distribution():
    assert HParam(3).sample(np.random.default_rng(0)) == 3, "no distribution: the default"
    assert HParam(3, low=1.0).sample(np.random.default_rng(0)) == 3
    assert HParam(3, high=1.0).sample(np.random.default_rng(0)) == 3
    choices = HParam("a", choices=("a", "b", "c"))
    assert choices.sample(np.random.default_rng(5)) == ("a", "b", "c")[int(np.random.default_rng(5).integers(3))]
    assert {choices.sample(np.random.default_rng(s)) for s in range(40)} == {"a", "b", "c"}
    uniform = HParam(0.5, 0.3, 0.7)
    assert uniform.sample(np.random.default_rng(1)) == np.random.default_rng(1).uniform(0.3, 0.7)
    log = HParam(1.0, 0.1, 3.0, log=True)
    want = math.exp(np.random.default_rng(2).uniform(math.log(0.1), math.log(3.0)))
    assert log.sample(np.random.default_rng(2)) == pytest.approx(want, rel=1e-12)
    integer = HParam(2, 0, 4, integer=True)
    drawn = [integer.sample(np.random.default_rng(s)) for s in range(200)]
    assert set(drawn) == {0, 1, 2, 3, 4} and all(type(v) is int for v in drawn), "both ends included"
    assert isinstance(uniform.sample(np.random.default_rng(0)), float)


def test_hparam_describe_and_searched():
    assert HParam(1.0, 0.1, 3.0, log=True).describe() == "log-uniform [0.1, 3]"
    assert HParam(0.5, 0.3, 0.7).describe() == "uniform [0.3, 0.7]"
    assert HParam(2, 0, 4, integer=True).describe() == "integer [0, 4]"
    assert HParam(2, 0, 4, integer=True, log=True).describe() == "integer [0, 4]"
    assert HParam("hard", choices=("hard", "gaussian")).describe() == "one of hard, gaussian"
    assert HParam(1.0).describe() == "fixed" and HParam(1.0, low=0.5).describe() == "fixed"
    assert HParam(1.0, high=0.5).describe() == "fixed"
    assert HParam(1.0, 0.5, 2.0).searched and HParam("a", choices=("a",)).searched
    assert not HParam(1.0).searched and not HParam(1.0, low=0.5).searched and not HParam(1.0, high=2.0).searched


def test_unknown_parameters_are_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"^method 'gradcam': unknown parameter\(s\) a, b; allowed: none$"):
        build_method("gradcam", b=1, a=2)
    with pytest.raises(ValueError, match=r"^method 'am_only': unknown parameter\(s\) x; allowed: alpha, "):
        build_method("am_only", x=1)
    with pytest.raises(ValueError) as err:
        build_method("gain", zz=1)
    assert str(err.value).endswith("allowed: " + ", ".join(sorted(GAIN.HPARAMS)))
    with pytest.raises(ValueError, match=r"^unknown method 'nope'; known methods: am_only, copy_paste, "):
        build_method("nope")


def test_missing_attribute_is_an_attribute_error_even_before_params_exist():
    method = GAIN()
    assert method.alpha == 1.0
    with pytest.raises(AttributeError, match=r"^nothing$"):
        _ = method.nothing
    bare = object.__new__(GAIN)  # e.g. while unpickling, before __init__ ran
    assert not hasattr(bare, "alpha")
    assert Method().params == {}


def test_gain_refuses_bad_settings_with_their_names():
    with pytest.raises(ValueError, match=r"^method 'gain': masked_bn must be one of eval, train, batch, got 'x'$"):
        GAIN(masked_bn="x")
    with pytest.raises(ValueError, match=r"^method 'gain_ext': exact_gradient must be true or false, got 1$"):
        GAINExt(exact_gradient=1)
    with pytest.raises(ValueError, match=r"^method 'gain_ext': e_loss must be one of mse, outside_energy, got 'l1'$"):
        GAINExt(e_loss="l1")


def test_exact_variant_is_the_same_method_with_exact_gradients():
    method = GAINExt(alpha=0.5, omega_e=3.0)
    exact = method.exact_variant()
    assert type(exact) is GAINExt and exact.params == method.params | {"exact_gradient": True}
    assert exact.exact_variant() is None
    assert Method().exact_variant() is None


def _soft_masked(model, batch, method):
    """The erased images by hand: Grad-CAM `relu(W[c] / (h w) . f)`, min-max normalised with the method's eps, the
    soft mask `sigmoid(omega (A - sigma))`, the image times one minus it; and the mean of the mask."""
    W = model.head[-1].weight.detach()
    features = model.features(batch["image"]).detach()
    images, masks = [], []
    for i, c in (batch["labels"] > 0.5).nonzero().tolist():
        cam = torch.relu(torch.einsum("k,khw->hw", W[c] / 16.0, features[i]))
        a = (cam - cam.min()) / (cam.max() - cam.min() + method.norm_eps)
        t = torch.sigmoid(method.omega * (a - method.sigma))
        images.append(batch["image"][i] * (1 - t))
        masks.append(t)
    return torch.stack(images), torch.stack(masks).mean()


@pytest.mark.parametrize("norm_eps", [1e-12, 2.0])
def test_erased_images_and_mask_share_by_hand(norm_eps):
    model, batch = tiny_model(), tiny_batch()
    method = GAIN(norm_eps=norm_eps, sigma=0.4, omega=7.0, warmup_epochs=1)
    want, share = _soft_masked(model, batch, method)
    torch.testing.assert_close(method.erased_images(model, batch, epoch=1), want)
    parts = method.training_loss(model, batch, epoch=1)
    torch.testing.assert_close(parts["mask_share"], share)
    assert method.erased_images(model, batch, epoch=0) is None, "during the warm-up there is no erased pass"
    assert GAIN(alpha=0.0).erased_images(model, batch, epoch=5) is None
    no_labels = batch | {"labels": torch.zeros_like(batch["labels"])}
    assert method.erased_images(model, no_labels, epoch=1) is None


def test_one_labelled_image_mines_and_no_label_does_not():
    model, batch = tiny_model(), tiny_batch()
    one = batch | {"labels": torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])}
    parts = GAIN(warmup_epochs=0).training_loss(model, one, epoch=0)
    assert "mask_share" in parts and parts["am"] > 0
    torch.testing.assert_close(parts["am"], by_hand(model, one)["am"])
    none = batch | {"labels": torch.zeros_like(batch["labels"])}
    parts = GAIN(warmup_epochs=0).training_loss(model, none, epoch=0)
    assert "mask_share" not in parts and parts["am"] == 0 and parts["total"] == parts["cl"]
    parts = GAIN(alpha=0.0, warmup_epochs=0).training_loss(model, batch, epoch=0)
    assert "mask_share" not in parts and parts["am"] == 0


def test_gain_ext_l_e_without_attention_mining():
    """alpha = 0 switches attention mining off, not L_e: the maps are still taken for the pixel-labelled images."""
    model, batch = tiny_model(), tiny_batch()
    parts = GAINExt(alpha=0.0, warmup_epochs=0).training_loss(model, batch, epoch=0)
    hand = by_hand(model, batch)
    assert parts["am"] == 0 and parts["e"] > 0
    torch.testing.assert_close(parts["e"], hand["e"])
    torch.testing.assert_close(parts["total"], hand["cl"] + 10.0 * hand["e"])


def test_outside_energy_l_e_uses_the_raw_maps():
    model, batch = tiny_model(), tiny_batch()
    with torch.no_grad():
        batch["image"][0, :, 0, 0] = 3.0  # a raw map far from [0, 1], so normalising it would show
    parts = GAINExt(e_loss="outside_energy", warmup_epochs=0).training_loss(model, batch, epoch=0)
    W, features = model.head[-1].weight.detach(), model.features(batch["image"]).detach()
    shares = []
    for c in (0, 1):  # image 0 is the only pixel-labelled one; its classes 0 and 1
        raw = torch.relu(torch.einsum("k,khw->hw", W[c] / 16.0, features[0]))
        valid = batch["mask"][0] != 255
        inside = batch["mask"][0] == c + 1
        shares.append(raw[valid & ~inside].sum() / raw[valid].sum())
    torch.testing.assert_close(parts["e"], sum(shares) / 2 / 3)


def test_exact_gradient_puts_the_cam_weights_in_the_graph():
    model, batch = tiny_model(), tiny_batch()
    weight = model.head[-1].weight
    for exact in (False, True):
        method = GAIN(exact_gradient=exact)
        features = model.features(batch["image"])
        raw = method._raw_maps(
            model, features, model.head(features), torch.tensor([0]), torch.tensor([1]), batch["image"].shape[-2:]
        )
        (grad,) = torch.autograd.grad(raw.sum(), weight, allow_unused=True)
        assert (grad is not None) == exact


def test_external_loss_of_one_valid_pixel_and_per_pair_sums():
    maps = torch.tensor([[[0.5, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    masks = torch.tensor([[[0, 255], [255, 255]], [[1, 0], [0, 0]]])
    loss = external_loss(maps, masks, torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
    # pair 0: one valid pixel, (0.5 - 0)^2; pair 1: (1-1)^2 + (1-0)^2 over 4 pixels = 1/4; batch of 2
    assert loss.item() == pytest.approx((0.25 + 0.25) / 2)


def test_outside_energy_of_small_maps_per_pair():
    raw = torch.tensor([[[0.1, 0.3], [0.0, 0.0]], [[2.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    loss = outside_energy_loss(raw, masks, torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), 3)
    # pair 0: 0.3 of 0.4 outside (a total below 1 is a share too); pair 1: 2 of 4; pair 2: all-zero map costs 1
    assert loss.item() == pytest.approx((0.75 + 0.5 + 1.0) / 3)


def test_batch_mean_of_image_means_by_hand():
    values = torch.tensor([1.0, 3.0, 5.0])
    out = batch_mean_of_image_means(values, torch.tensor([0, 0, 2]), 4)
    assert out.item() == pytest.approx((2.0 + 0 + 5.0 + 0) / 4)
    assert batch_mean_of_image_means(values[:0], torch.tensor([], dtype=torch.long), 0).item() == 0.0


# The counterfactual methods and RRR, on test_competitors' scene (image 0 pixel-labelled: class 0 in a 3x3 square
# at rows/cols 2..4, class 1 in the bottom-right corner).


def test_budget_objects_without_pixel_labelled_images_are_empty():
    batch = scene() | {"has_mask": torch.zeros(4, dtype=torch.bool)}
    pair_image, pair_class, cut, masks = budget_objects(batch)
    assert pair_image.shape == (0,) and pair_class.shape == (0,) and pair_image.dtype == pair_class.dtype == torch.long
    assert cut.shape == (0, 8, 8) and cut.dtype == torch.bool
    assert masks.shape == (0, 8, 8) and masks.dtype == torch.long
    for images, labels in (paste_objects(batch), remove_objects(batch), remove_objects(batch, fill="blur")):
        assert images.shape == (0, 3, 8, 8) and labels.shape == (0, 2)


def _gaussian(sigma, radius):
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


@pytest.mark.parametrize(("sigma", "radius"), [(1.0, 3), (1.5, 5), (0.2, 1)])
def test_gaussian_blur_of_a_point_is_the_normalised_kernel(sigma, radius):
    x = torch.zeros(1, 2, 13, 15, dtype=torch.float64)
    x[0, :, 6, 7] = 1.0
    k = _gaussian(sigma, radius)
    want = torch.zeros(13, 15, dtype=torch.float64)
    want[6 - radius : 7 + radius, 7 - radius : 8 + radius] = torch.outer(k, k)
    out = gaussian_blur(x, sigma)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[0, 0], want)
    torch.testing.assert_close(out[0, 1], want)


def test_scale_about_centroid_by_hand():
    """Nearest-neighbour resampling about the object's centroid: output pixel (i, j) takes the source pixel at
    `centroid + (position - centroid) / scale`, in the grid's [-1, 1] pixel-centre coordinates."""
    h, w = 9, 12
    images = torch.arange(2 * 3 * h * w, dtype=torch.float32).view(2, 3, h, w)
    cut = torch.zeros(2, h, w, dtype=torch.bool)
    cut[0, 2:5, 3:7] = True  # centroid row 3, col 4.5
    cut[1, 5:8, 1:3] = True
    scale = torch.tensor([1.7, 0.6])
    resized, mask = _scale_about_centroid(images, cut, scale)
    for p in range(2):
        ys, xs = cut[p].nonzero(as_tuple=True)
        cy, cx = ys.double().mean(), xs.double().mean()
        want_img = torch.zeros(3, h, w)
        want_mask = torch.zeros(h, w, dtype=torch.bool)
        for i in range(h):
            for j in range(w):
                si = cy + (i - cy) / scale[p].double()
                sj = cx + (j - cx) / scale[p].double()
                assert abs(si - si.floor() - 0.5) > 1e-3 and abs(sj - sj.floor() - 0.5) > 1e-3, "no rounding tie"
                si, sj = int(torch.round(si)), int(torch.round(sj))
                if 0 <= si < h and 0 <= sj < w:
                    want_img[:, i, j] = images[p, :, si, sj]
                    want_mask[i, j] = cut[p, si, sj]
        torch.testing.assert_close(resized[p], want_img)
        assert torch.equal(mask[p], want_mask)


def test_paste_without_jitter_is_the_exact_hard_composite():
    batch = scene()
    torch.manual_seed(4)
    images, _ = paste_objects(batch)
    for pasted, c in zip(images, (0, 1), strict=True):
        cut = batch["mask"][0] == c + 1
        targets = [j for j in range(4) if torch.equal(pasted[:, ~cut], batch["image"][j][:, ~cut])]
        assert len(targets) == 1
        assert torch.equal(pasted[:, cut], batch["image"][0][:, cut]), "the object where it was, not resized"
    with pytest.raises(ValueError, match=r"^copy_paste: blend must be one of hard, gaussian, got 'soft'$"):
        paste_objects(batch, blend="soft")


def test_methods_pass_their_settings_to_paste_and_removal():
    batch = scene()
    method = build_method(
        "counterfactual",
        blend="gaussian",
        blend_sigma=0.7,
        scale_jitter=True,
        scale_low=1.3,
        scale_high=1.4,
        fill="blur",
        fill_sigma=2.5,
        dilate=0,
    )
    torch.manual_seed(7)
    made = method.counterfactuals(batch)
    torch.manual_seed(7)
    paste = paste_objects(batch, blend="gaussian", blend_sigma=0.7, scale_jitter=True, scale_low=1.3, scale_high=1.4)
    for got, want in zip(made["paste"], paste, strict=True):
        assert torch.equal(got, want)
    removal = remove_objects(batch, fill="blur", fill_sigma=2.5, dilate=0)
    for got, want in zip(made["removal"], removal, strict=True):
        assert torch.equal(got, want)
    for got, want in zip(
        remove_objects(batch, fill="blur"), remove_objects(batch, fill="blur", fill_sigma=4.0), strict=True
    ):
        assert torch.equal(got, want), "the blur's default sigma is 4 px"


def test_blur_fill_by_hand():
    """One erased pixel (dilate 0) in a one-channel image: the blur fill is the Gaussian-weighted mean of the kept
    pixels around it (zero padding at the border), a normalised convolution."""
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 1, 7, 7, generator=g)
    mask = torch.zeros(1, 7, 7, dtype=torch.long)
    mask[0, 3, 2] = 1
    batch = {"image": image, "labels": torch.tensor([[1.0]]), "mask": mask, "has_mask": torch.tensor([True])}
    erased, labels = remove_objects(batch, fill="blur", fill_sigma=1.0, dilate=0)
    k = _gaussian(1.0, 3)
    num = den = 0.0
    for i in range(7):
        for j in range(7):
            if (i, j) != (3, 2) and abs(i - 3) <= 3 and abs(j - 2) <= 3:
                weight = k[i - 3 + 3] * k[j - 2 + 3]
                num, den = num + weight * image[0, 0, i, j].double(), den + weight
    assert erased[0, 0, 3, 2].item() == pytest.approx((num / den).item(), rel=1e-5)
    keep = torch.ones(7, 7, dtype=torch.bool)
    keep[3, 2] = False
    assert torch.equal(erased[0, 0][keep], image[0, 0][keep]) and labels.tolist() == [[0.0]]
    with pytest.raises(ValueError, match=r"^object_removal: fill must be one of mean, blur, got 'zero'$"):
        remove_objects(batch, fill="zero")


def test_a_kind_that_makes_no_image_costs_zero_not_nan():
    model, batch = small_cnn_scene()
    batch["labels"][:, 0] = 1.0  # every image has class 0: the class-0 object has no paste target
    batch["labels"][:, 1] = 1.0
    parts = build_method("counterfactual").training_loss(model, batch, epoch=0)
    assert parts["paste"] == 0 and torch.isfinite(parts["removal"]) and parts["removal"] > 0


def test_rrr_weight_zero_and_its_batchnorm_mode():
    model, batch = small_cnn_scene()
    off = build_method("rrr", lam=0.0).training_loss(model, batch, epoch=0)
    assert off["rrr"] == 0 and off["total"] == off["cl"]
    model.train()
    with torch.no_grad():  # BatchNorm statistics far from the running ones, so the two modes differ
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.5)
                m.running_var.fill_(4.0)
    on = build_method("rrr", lam=2.0, grad_bn="train").training_loss(model, batch, epoch=0)
    train = input_gradient_penalty(model, batch, "train")
    assert on["rrr"].item() == pytest.approx(train.item(), rel=1e-5)
    assert on["rrr"].item() != pytest.approx(input_gradient_penalty(model, batch, "eval").item(), rel=1e-3)
    assert on["total"].item() == pytest.approx((on["cl"] + 2.0 * on["rrr"]).item(), rel=1e-5)


def test_integer_hparam_draws_from_its_low_end_up():
    drawn = {HParam(2, 1, 3, integer=True).sample(np.random.default_rng(s)) for s in range(60)}
    assert drawn == {1, 2, 3}


def test_counterfactuals_hand_every_setting_on(monkeypatch):
    from benchmark.execute.methods import counterfactual

    calls = {}
    monkeypatch.setattr(counterfactual, "paste_objects", lambda batch, **kw: calls.setdefault("paste", kw))
    monkeypatch.setattr(counterfactual, "remove_objects", lambda batch, **kw: calls.setdefault("removal", kw))
    params = {"blend": "gaussian", "blend_sigma": 0.7, "scale_jitter": True, "scale_low": 0.3, "scale_high": 1.9}
    removal = {"fill": "blur", "fill_sigma": 2.5, "dilate": 2}
    build_method("counterfactual", **params, **removal).counterfactuals(scene())
    assert calls == {"paste": params, "removal": removal}


def test_paste_defaults_and_no_resizing_without_jitter(monkeypatch):
    from benchmark.execute.methods import counterfactual

    seen = {}
    real_blur, real_scale = counterfactual.gaussian_blur, counterfactual._scale_about_centroid

    def blur(x, sigma):
        seen["sigma"] = sigma
        return real_blur(x, sigma)

    def scale(images, cut, factor):
        seen["scale"] = factor
        return real_scale(images, cut, factor)

    monkeypatch.setattr(counterfactual, "gaussian_blur", blur)
    monkeypatch.setattr(counterfactual, "_scale_about_centroid", scale)
    paste_objects(scene(), blend="gaussian")
    assert seen == {"sigma": 1.0}, "feathering of 1 px by default, and no resizing without scale_jitter"
    torch.manual_seed(0)
    paste_objects(scene(), scale_jitter=True)
    torch.manual_seed(0)
    torch.rand(2, 4)  # the targets' draw comes first: 2 objects x 4 images
    want = torch.empty(seen["scale"].numel()).uniform_(0.5, 1.5)
    torch.testing.assert_close(seen["scale"], want, msg="the jitter is U[0.5, 1.5] by default")


def test_mean_fill_of_an_image_with_one_pixel_left():
    image = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    mask = torch.tensor([[[1, 1], [1, 0]]])
    batch = {"image": image, "labels": torch.tensor([[1.0]]), "mask": mask, "has_mask": torch.tensor([True])}
    erased, _ = remove_objects(batch, dilate=0)
    torch.testing.assert_close(erased[0, 0], torch.full((2, 2), 0.8), msg="the one kept pixel is the mean")


def test_scaled_cut_out_is_exactly_the_resampled_source_mask():
    """The documented property of `_scale_about_centroid`: the cut-out after scaling marks exactly the pixels whose
    (nearest-neighbour) source pixel was inside the mask, for any mask and scale; a mask resampled any other way
    (bilinear, then thresholded) marks other pixels at its edges."""
    from benchmark.execute.methods.counterfactual import _scale_about_centroid

    generator = torch.Generator().manual_seed(3)
    cut = torch.rand(8, 12, 12, generator=generator) > 0.6
    images = cut.float().unsqueeze(1).repeat(1, 3, 1, 1)  # each image is its own mask
    scale = torch.rand(8, generator=generator) * 1.8 + 0.4
    resized, mask = _scale_about_centroid(images, cut, scale)
    assert torch.equal(resized[:, 0] > 0.5, mask)
    assert torch.equal(resized[:, 1], resized[:, 0]) and torch.equal(resized[:, 2], resized[:, 0])
