"""ResNet-20 (kp.models.resnet20) training steps on CIFAR-format batches: knetpy against PyTorch.

The same network in both frameworks (torch's written here, laid out as torchvision lays out a
ResNet, so that ``kp.models.load_torch_state`` gives knetpy the very same starting weights),
batch 128 of 3x32x32 images from the synthetic CIFAR-format set of ``knetpy train resnet``, plain
SGD with learning rate 0.05, softmax cross-entropy, training mode (batch statistics). The
frameworks take turns batch by batch so that the machine's slow spells hit them alike. The table
gives the seconds for the timed batches, the time per CIFAR-10 epoch (50,000 images) they imply
and the last loss (both start from the same weights and see the same batches, so the losses agree
closely).

    python benchmarks/resnet.py               # 20 batches each
    python benchmarks/resnet.py --batches 4   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import blas_report, knetpy_sgd_step, table  # noqa: E402

BATCH = 128
LR = 0.05
EPOCH_IMAGES = 50_000


def torch_resnet20(torch):
    nn = torch.nn

    class Block(nn.Module):
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
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + identity)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            cin = 16
            for i, w in enumerate((16, 32, 64)):
                setattr(self, f"layer{i + 1}", nn.Sequential(*(Block(cin if j == 0 else w, w, 2 if i and not j else 1)
                                                               for j in range(3))))
                cin = w
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


def torch_step(torch, net, opt, xb, yb):
    """One PyTorch training step of ``net`` on NumPy batches: cross-entropy, backward, ``opt``'s step. The loss."""
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb))
    loss.backward()
    opt.step()
    return loss


def race(x, y, batches):
    """ResNet-20 in knetpy and in PyTorch from the same starting weights, taking turns batch by batch
    over the first ``batches`` + 1 batches of ``x``, ``y`` (the first warms both up and is not timed).
    Returns the seconds per framework, the last losses and the knetpy model."""
    import torch

    import knetpy as kp

    torch.manual_seed(0)
    tnet = torch_resnet20(torch).train()
    knet = kp.models.resnet20()
    kp.models.load_torch_state(knet, tnet.state_dict())  # the same starting weights
    params = knet.parameters()
    topt = torch.optim.SGD(tnet.parameters(), lr=LR)
    steps = {"knetpy": lambda xb, yb: float(knetpy_sgd_step(knet, params, xb, yb, LR).value),
             "PyTorch": lambda xb, yb: torch_step(torch, tnet, topt, xb, yb).item()}
    seconds, last = dict.fromkeys(steps, 0.0), {}
    for i in range(batches + 1):
        xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        for name, step in steps.items():
            tick = time.perf_counter()
            last[name] = step(xb, yb)
            if i:
                seconds[name] += time.perf_counter() - tick
    return seconds, last, knet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per framework (default: 20)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both (default: the cores for PyTorch, automatic for knetpy)")
    args = parser.parse_args()

    import torch

    import knetpy as kp
    from knetpy.examples.resnet import synthetic_cifar

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    if args.threads:  # else knetpy's defaults: automatic threads
        kp.set_num_threads(args.threads)
    x, y = synthetic_cifar(BATCH * (args.batches + 1), seed=0)
    seconds, last, knet = race(x, y, args.batches)
    per_epoch = {k: v / (args.batches * BATCH) * EPOCH_IMAGES for k, v in seconds.items()}
    rows = [(name, seconds[name], f"{per_epoch[name]:.0f} s per CIFAR-10 epoch; last loss {last[name]:.4f}")
            for name in ("knetpy", "PyTorch")]
    print(f"ResNet-20 ({knet.count_params():,} parameters), {args.batches} batches of {BATCH}, "
          f"{threads} threads")
    print(table(rows))
    print(blas_report())


if __name__ == "__main__":
    main()
