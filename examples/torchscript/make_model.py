"""Scripts a small residual CNN for Fashion-MNIST (1x28x28, 10 classes) into model.ts.

    python3 make_model.py model.ts
    qsr-run --workers 2 --recipe recipe.yaml --model-path model.ts
"""
import sys

import torch
import torch.nn as nn


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(y)))
        return self.head(self.drop(torch.flatten(self.pool(x), 1)))


if __name__ == "__main__":
    torch.jit.script(SmallResNet()).save(sys.argv[1] if len(sys.argv) > 1 else "model.ts")
