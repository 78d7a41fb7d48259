"""The Python side of torchscript_e2e_test.sh.

  torchscript_e2e.py script OUT.ts DATA.pt
      scripts SmallResNet (not one of qsr's models) and saves it; saves a Fashion-MNIST subset
      (9,600 training and 2,000 test images, uint8) as a `tensors` dataset file
  torchscript_e2e.py check RUN_DIR DATA.pt
      loads the run's model.pt into a fresh SmallResNet and its model.ts as it is, evaluates both
      on the test tensors of DATA.pt (normalised as the worker does: /255, then mean and std), and
      checks both against the run's last evals.jsonl accuracy (1e-4)
"""
import gzip
import json
import struct
import sys

import torch
import torch.nn as nn

FASHION = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
TRAIN, TEST = 9600, 2000  # 150 steps of 64 per epoch


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8, momentum=0.2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(y)))
        return self.head(self.drop(torch.flatten(self.pool(x), 1)))


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def first_existing(name):
    import os
    for p in (f"{FASHION}/{name}", f"{FASHION}/{name}.gz"):
        if os.path.exists(p):
            return p
    sys.exit(f"missing {FASHION}/{name}[.gz] (install dataset-fashion-mnist)")


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item()
    return correct / len(x)


def save_subset(path):
    torch.save({
        "train_x": read_idx(first_existing("train-images-idx3-ubyte"))[:TRAIN].clone(),
        "train_y": read_idx(first_existing("train-labels-idx1-ubyte"))[:TRAIN].long(),
        "test_x": read_idx(first_existing("t10k-images-idx3-ubyte"))[:TEST].clone(),
        "test_y": read_idx(first_existing("t10k-labels-idx1-ubyte"))[:TEST].long(),
        "num_classes": 10, "mean": MEAN, "std": STD}, path)


def main():
    if sys.argv[1] == "script":
        torch.manual_seed(3)
        torch.jit.script(SmallResNet()).save(sys.argv[2])
        save_subset(sys.argv[3])
        return
    run = sys.argv[2]
    data = torch.load(sys.argv[3])
    x = data["test_x"].float().div(255.0).sub(MEAN).div(STD).reshape(-1, 1, 28, 28)
    y = data["test_y"]
    with open(f"{run}/evals.jsonl") as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    want = last["test_acc"]
    net = SmallResNet()
    net.load_state_dict(torch.load(f"{run}/checkpoints/model.pt"), strict=True)
    scripted = torch.jit.load(f"{run}/checkpoints/model.ts")
    a, b = accuracy(net, x, y), accuracy(scripted, x, y)
    print(f"evals.jsonl {want:.4f}, model.pt {a:.4f}, model.ts {b:.4f}")
    if abs(a - want) > 1e-4 or abs(b - want) > 1e-4:
        sys.exit("the exported models do not reproduce the run's accuracy")
    if want < 0.5:
        sys.exit(f"accuracy {want} after training: the model did not learn")


if __name__ == "__main__":
    main()
