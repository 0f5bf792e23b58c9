"""Loading PyTorch weights into zoo networks: the same network written in torch, with random weights and
batch-norm statistics, exported with safetensors, loaded by ``kp.models.load_torch_state``; the two
must give the same outputs in eval mode."""

import json

import numpy as np
import pytest

import knetpy as kp
from knetpy import models

torch = pytest.importorskip("torch", reason="the reference networks are written in torch")
nn = torch.nn
st = pytest.importorskip("safetensors.torch", reason="checkpoints are exported with safetensors")


@pytest.fixture(autouse=True)
def _float32_torch():
    """These networks are compared in float32, whatever default dtype another test's torch fixture left."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(before)


# -- the reference networks, laid out as torchvision lays them out -------------------------------------------
class TorchBasicBlock(nn.Module):
    def __init__(self, cin, filters, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.downsample = None
        if stride != 1 or cin != filters:
            self.downsample = nn.Sequential(nn.Conv2d(cin, filters, 1, stride, bias=False), nn.BatchNorm2d(filters))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + identity)


class TorchBottleneck(nn.Module):
    def __init__(self, cin, filters, stride, groups, base_width):
        super().__init__()
        width = int(filters * base_width / 64) * groups
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, filters * 4, 1, bias=False), nn.BatchNorm2d(filters * 4)
        self.downsample = None
        if stride != 1 or cin != filters * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, filters * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(filters * 4))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + identity)


class TorchResNet(nn.Module):
    """torchvision's ResNet with the 7x7 stem and max pooling (imagenet=True) or a 3x3 stem."""

    def __init__(self, widths, layers, num_classes, imagenet, bottleneck=False, groups=1, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False) if imagenet else nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        cin = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 1 if i == 0 or j else 2
                if bottleneck:
                    blocks.append(TorchBottleneck(cin, w, stride, groups, base_width))
                    cin = w * 4
                else:
                    blocks.append(TorchBasicBlock(cin, w, stride))
                    cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def torch_vgg(config, batch_norm, hidden, num_classes, flat):
    layers, cin = [], 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(cin, item, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU())
        cin = item
    net = nn.Module()
    net.features = nn.Sequential(*layers)
    net.classifier = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden),
                                   nn.ReLU(), nn.Dropout(), nn.Linear(hidden, num_classes))
    net.forward = lambda x: net.classifier(torch.flatten(net.features(x), 1))
    return net


def randomize(net, seed):
    """Random weights and batch-norm statistics, so that eval mode has something to get wrong."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
                module.num_batches_tracked.fill_(7)
    return net.eval()


def compare(net, model, x, tmp_path, fmt="safetensors"):
    path = tmp_path / f"weights.{fmt}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if fmt == "safetensors":
        st.save_file(state, str(path))
    else:
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    assert models.load_torch_state(model, path) is model
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    return state


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_small_resnet_from_torch_matches_outputs(tmp_path, fmt):
    torch.manual_seed(0)
    net = randomize(TorchResNet((8, 16, 32), (2, 1, 1), 7, imagenet=False), 1)
    model = models.ResNet("basic", (2, 1, 1), num_classes=7, input_shape=(3, 16, 16), widths=(8, 16, 32), stem="small")
    state = compare(net, model, images((5, 3, 16, 16)), tmp_path, fmt)
    # every tensor arrived: running statistics included, the Linear weight transposed
    np.testing.assert_array_equal(model.fc.w.value, state["fc.weight"].numpy().T)
    np.testing.assert_array_equal(model.layer2[0].downsample[1].running_var.value,
                                  state["layer2.0.downsample.1.running_var"].numpy())
    assert float(model.bn1.batches_seen.value) == 7


def test_imagenet_stem_bottleneck_resnext_from_torch(tmp_path):
    torch.manual_seed(1)
    net = randomize(TorchResNet((8, 16), (1, 2), 4, imagenet=True, bottleneck=True, groups=2, base_width=8), 2)
    model = models.ResNet("bottleneck", (1, 2), num_classes=4, input_shape=(3, 40, 40), widths=(8, 16),
                          stem="imagenet", groups=2, width_per_group=8)
    compare(net, model, images((3, 3, 40, 40), 1), tmp_path)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_small_vgg_from_torch_matches_outputs(tmp_path, batch_norm):
    torch.manual_seed(2)
    config = [c // 16 if c != "M" else c for c in models.classic.VGG_CONFIGS[11]]
    net = randomize(torch_vgg(config, batch_norm, hidden=24, num_classes=6, flat=32), 3)
    model = models.VGG(11, batch_norm=batch_norm, num_classes=6, input_shape=32, width=1 / 16, hidden=24)
    compare(net, model, images((4, 3, 32, 32), 2), tmp_path)


def test_names_follow_torchvision():
    """The torchvision names of a few tensors of each family, as its checkpoints spell them."""
    names = {
        models.resnet18: ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "fc.weight"],
        models.densenet121: ["features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
                             "features.transition1.conv.weight", "features.norm5.bias", "classifier.weight"],
        models.googlenet: ["conv1.conv.weight", "conv1.bn.running_mean", "inception3a.branch2.1.conv.weight",
                           "inception5b.branch4.1.bn.weight", "fc.bias"],
        models.squeezenet1_1: ["features.0.weight", "features.3.squeeze.weight", "features.12.expand3x3.bias",
                               "classifier.1.weight"],
        models.alexnet: ["features.0.weight", "features.10.bias", "classifier.1.weight", "classifier.6.bias"],
        models.vgg16_bn: ["features.0.weight", "features.1.running_mean", "features.41.weight", "classifier.6.weight"],
    }
    for fn, expected in names.items():
        model = fn(num_classes=10, input_shape=64, stem="imagenet") if fn is not models.vgg16_bn else fn(
            num_classes=10, input_shape=32, width=1 / 16, hidden=8)
        got = set(models.torch_names(model).values())
        assert set(expected) <= got, (fn.__name__, sorted(set(expected) - got))


def test_mismatches_are_named(tmp_path):
    torch.manual_seed(3)
    net = TorchResNet((8, 16), (1, 1), 3, imagenet=False)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    model = models.ResNet("basic", (1, 1), num_classes=3, input_shape=16, widths=(8, 16), stem="small")
    before = model.fc.w.value.copy()
    partial = dict(state)
    del partial["layer1.0.conv1.weight"]
    partial["head.weight"] = state["fc.weight"]
    with pytest.raises(ValueError, match=r"missing from the checkpoint layer1\.0\.conv1\.weight.*head\.weight"):
        models.load_torch_state(model, partial)
    models.load_torch_state(model, partial, strict=False)  # the rest loads
    np.testing.assert_array_equal(model.fc.w.value, state["fc.weight"].numpy().T)
    wrong = dict(state, **{"fc.weight": torch.zeros(3, 9)})
    model.fc.w.value[...] = before
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \(3, 9\).*transposed.*\(16, 3\)"):
        models.load_torch_state(model, wrong)
    np.testing.assert_array_equal(model.fc.w.value, before)  # nothing changed on failure
    renamed = models.load_torch_state(model, {f"module.{k}": v for k, v in state.items()},
                                      rename=lambda k: k.removeprefix("module."))
    np.testing.assert_array_equal(renamed.fc.w.value, state["fc.weight"].numpy().T)
    with pytest.raises(ValueError, match="pickled"):
        models.load_torch_state(model, tmp_path / "weights.pth")


def test_safetensors_reader(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "h": torch.tensor([1.5, -2.0], dtype=torch.float16),
               "b": torch.tensor([1.0, -3.25, 0.5], dtype=torch.bfloat16), "i": torch.tensor([1, 2], dtype=torch.int64)}
    path = tmp_path / "t.safetensors"
    st.save_file(tensors, str(path))
    got = models.read_safetensors(path)
    assert set(got) == set(tensors)
    np.testing.assert_array_equal(got["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got["h"].dtype == np.float16 and got["i"].dtype == np.int64
    np.testing.assert_array_equal(got["b"], np.array([1.0, -3.25, 0.5], np.float32))
    # malformed files: a header longer than the file, offsets outside the data, a size that does not fit the shape
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    (tmp_path / "long.safetensors").write_bytes((10**9).to_bytes(8, "little") + raw[8:])
    header["a"]["data_offsets"] = [0, 10**6]
    (tmp_path / "out.safetensors").write_bytes(_pack(header, raw[8 + n:]))
    header["a"]["data_offsets"], header["a"]["shape"] = [0, 24], [5]
    (tmp_path / "size.safetensors").write_bytes(_pack(header, raw[8 + n:]))
    for name, message in [("long", "header claims"), ("out", "outside the data"), ("size", "24 bytes for shape")]:
        with pytest.raises(kp.CheckpointError, match=message):
            models.read_safetensors(tmp_path / f"{name}.safetensors")


def _pack(header, data):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data
