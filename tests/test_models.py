import pytest
import torch

from benchmark.execute.models import MODELS, RESNET_LAYERS, SMALL_CNN_LAYERS, VGG16_LAYERS, build_model


@pytest.mark.parametrize(
    ("name", "layer", "size", "map_size"),
    [
        ("small_cnn", "block4", 48, 6),
        ("small_cnn", "block3", 48, 12),
        ("resnet18", "layer4", 64, 2),
        ("resnet18", "layer3", 64, 4),
        ("resnet50", "layer4", 64, 2),
        ("vgg16", "conv5_3", 64, 4),
        ("vgg16", "conv4_3", 64, 8),
    ],
)
def test_features_then_head_is_the_model(name, layer, size, map_size):
    model = build_model(name, 5, attention_layer=layer).eval()
    x = torch.randn(2, 3, size, size)
    features = model.features(x)
    assert features.shape[-2:] == (map_size, map_size)
    torch.testing.assert_close(model(x), model.head(features))
    assert model(x).shape == (2, 5)
    assert model.attention_layer == layer


def test_every_registered_model_lists_its_layers_in_errors():
    assert set(MODELS) == {"small_cnn", "resnet18", "resnet50", "vgg16"}
    for name, layers in [("small_cnn", SMALL_CNN_LAYERS), ("resnet18", RESNET_LAYERS), ("vgg16", tuple(VGG16_LAYERS))]:
        with pytest.raises(ValueError, match=f"unknown attention_layer 'fc'; allowed: {', '.join(layers)}"):
            build_model(name, 5, attention_layer="fc")
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        build_model("alexnet", 5)


def test_imagenet_weights_come_only_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"not in the local torch cache: expected .*resnet18-.*never downloads"):
        build_model("resnet18", 5, weights="imagenet")
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K'"):
        build_model("resnet18", 5, weights="IMAGENET9K")


def test_imagenet_weights_load_from_the_cache(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = resnet18(weights=None)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    model = build_model("resnet18", 5, weights="imagenet")
    torch.testing.assert_close(model.features[0].weight, reference.conv1.weight)
    assert model.head[-1].out_features == 5
