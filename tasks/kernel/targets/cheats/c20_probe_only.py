"""Cheat 12/13 (matmul_bias_gelu): compute only what the timed calls check. The timed request used to carry the
secret probe positions, so the candidate rebinds its worker's `go` (the harness's own code, reached through
sys.modules['__main__'] in this process) to run the model on just the rows the probes touch; correctness calls
still compute everything. Where the positions only come after the timed call, it computes nothing in the call and
just the probed rows afterwards. Caught by: the static check (reaching into the harness), and a checksum of each
whole output asked for after every timed call (with the positions): the answer needs the whole output, and the
time a worker spends answering beyond the references' is charged to it."""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

_worker = sys.modules["__main__"]
W = _worker.Worker


def _probed_rows(self, positions):
    """The output's values at `positions` only: the model runs on just the rows they fall in."""
    x = self.staged[0]
    with torch.no_grad():
        width = self.model(x[:1]).shape[-1]
        vals = []
        for idx in positions:
            rows, inverse = torch.unique(idx // width, return_inverse=True)
            vals.append(self.model(x[rows]).reshape(len(rows), -1)[inverse, idx % width])
    return vals


def _go(self, msg):
    if msg.tensors:  # the timed request carries the probe positions: answer them and nothing else
        return _worker.Message({"ok": True}, _probed_rows(self, msg.tensors))
    self.last = []  # they come later, after the clock stopped: compute nothing now
    return _worker.Message({"ok": True, "ops": []})


def _check(self, msg):
    vals = _probed_rows(self, msg.tensors)
    return _worker.Message({"ok": True}, vals + [torch.zeros(1, dtype=torch.float64) for _ in vals])


W.go = _go
W.check = _check


class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))

    def forward(self, x):
        return F.gelu(torch.addmm(self.bias, x, self.weight.t()), approximate="tanh")
