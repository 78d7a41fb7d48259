# Writes the PyTorch files state_dict_import_test.cc loads. Run with a Python that has torch
# (Debian 12: /usr/bin/python3 with python3-torch): /usr/bin/python3 make_state_dicts.py
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.fc(x))


m = Tiny()
with torch.no_grad():
    m.fc.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10)
    m.fc.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    m.bn.weight.copy_(torch.tensor([0.5, 0.25, 2.0]))
    m.bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
    m.bn.num_batches_tracked.fill_(7)
# LibTorch reads plain dicts; model.state_dict() itself is an OrderedDict, which it cannot.
torch.save(dict(m.state_dict()), "tiny_state_dict.pt")
torch.save(m.state_dict(), "tiny_ordered_state_dict.pt")
torch.save({"module." + k: v for k, v in m.state_dict().items()}, "tiny_ddp_state_dict.pt")
torch.jit.save(torch.jit.script(m), "tiny_torchscript.pt")
torch.save(m.state_dict(), "tiny_legacy.pt", _use_new_zipfile_serialization=False)
