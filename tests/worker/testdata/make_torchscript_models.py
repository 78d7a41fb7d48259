"""Writes the TorchScript files torchscript_model_test.cc loads, into the folder argv[1].

  net.ts            a small CNN (conv, BatchNorm2d, residual add, dropout, linear) for 1x8x8 input,
                    10 classes; net_keys.txt lists its state_dict keys in order.
  bn_batches.pt     four input batches (a torch.jit-saved module holding them as attributes).
  bn_expected.pt    the running statistics PyTorch computes for net.ts on those batches with
                    momentum=None (a cumulative average), same form.
  state_dict.pt     a torch.save'd state dict: not a TorchScript archive.
  no_params.ts      a scripted module without parameters.
  newer.ts          net.ts with its archive's version record set to 99.
"""
import sys
import zipfile

import torch
import torch.nn as nn

out = sys.argv[1]
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=0.3)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(x + self.block(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


net = Net()
# Non-trivial statistics, so a reset is visible.
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(0.5)
            m.running_var.fill_(2.0)
            m.num_batches_tracked.fill_(11)
torch.jit.script(net).save(f"{out}/net.ts")
with open(f"{out}/net_keys.txt", "w") as f:
    f.write("\n".join(net.state_dict().keys()) + "\n")


class Holder(nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for k, v in tensors.items():
            self.register_buffer(k, v)


batches = {f"b{i}": torch.randn(6, 1, 8, 8) * (i + 1) + i for i in range(4)}
torch.jit.script(Holder(batches)).save(f"{out}/bn_batches.pt")

ref = Net()
ref.load_state_dict(net.state_dict())
ref.train()
with torch.no_grad():
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    for i in range(4):
        ref(batches[f"b{i}"])
expected = {}
for name, m in ref.named_modules():
    if isinstance(m, nn.BatchNorm2d):
        key = name.replace(".", "_")
        expected[f"{key}_mean"] = m.running_mean.clone()
        expected[f"{key}_var"] = m.running_var.clone()
        expected[f"{key}_nbt"] = m.num_batches_tracked.clone()
torch.jit.script(Holder(expected)).save(f"{out}/bn_expected.pt")

torch.save(net.state_dict(), f"{out}/state_dict.pt")


class NoParams(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)[:, :10]


torch.jit.script(NoParams()).save(f"{out}/no_params.ts")

with zipfile.ZipFile(f"{out}/net.ts") as src, zipfile.ZipFile(f"{out}/newer.ts", "w") as dst:
    for item in src.infolist():
        data = src.read(item.filename)
        if item.filename.endswith("/version"):
            data = b"99\n"
        dst.writestr(item, data)
