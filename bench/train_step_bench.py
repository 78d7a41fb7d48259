#!/usr/bin/env python3
"""The Python PyTorch twin of qsr-bench-step (bench/train_step_bench.cc).

Same models (the worker zoo's mlp and cnn, the CIFAR ResNet-18), same SGD settings, same loop on
synthetic on-device batches, same output line with impl=python.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        x = F.relu(self.fc1(x), inplace=True)
        x = F.relu(self.fc2(x), inplace=True)
        return self.fc3(x)


class Cnn(nn.Module):
    """worker/model/models.cc "cnn"."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x)), inplace=True), 2)
        x = F.relu(self.fc1(x.flatten(1)), inplace=True)
        return self.fc2(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out, inplace=True)


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, no max-pool, [2, 2, 2, 2] BasicBlocks, 3x32x32 inputs."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, width in enumerate([64, 128, 256, 512]):
            blocks = []
            for b in range(2):
                blocks.append(BasicBlock(cin, width, 2 if i > 0 and b == 0 else 1))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn", "resnet18"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = default)")
    p.add_argument("--memory-format", default="contiguous", choices=["contiguous", "channels_last"])
    p.add_argument("--grads", default="default", choices=["default", "none"],
                   help="default: opt.zero_grad() as this PyTorch does it (1.13 fills zeros, 2.x "
                        "sets to None); none: zero_grad(set_to_none=True), as qsr-worker does")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    device = torch.device(a.device)
    torch.manual_seed(1)
    model = {"mlp": Mlp, "cnn": Cnn, "resnet18": ResNet18}[a.model]().to(device).train()
    shape = (a.batch, 3, 32, 32) if a.model == "resnet18" else (a.batch, 1, 28, 28)
    params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    xs = [torch.randn(shape, device=device).contiguous(memory_format=fmt) for _ in range(8)]
    ys = [torch.randint(0, 10, (a.batch,), device=device) for _ in range(8)]

    def step(i):
        if a.grads == "none":
            opt.zero_grad(set_to_none=True)
        else:
            opt.zero_grad()
        loss = F.cross_entropy(model(xs[i % 8]), ys[i % 8])
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(a.warmup):
        step(i)
    sync()
    start = time.perf_counter()
    for i in range(a.steps):
        loss = step(i)
    sync()
    seconds = time.perf_counter() - start
    print(f"bench impl=python model={a.model} batch={a.batch} steps={a.steps} device={a.device} "
          f"params={params} memory_format={a.memory_format} grads={a.grads} samples_per_s={a.batch * a.steps / seconds:.0f} "
          f"step_ms={1000 * seconds / a.steps:.3f} final_loss={loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
