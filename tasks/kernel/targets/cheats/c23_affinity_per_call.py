"""Cheat 19, per call (CPU timing, matmul_bias_gelu): run a second compute thread on another core during
each call and put every thread back on the timing core before returning. The affinity used to be compared once,
at the end of the evaluation, where it only ever saw the restored mask. Caught by: the static check
(constant-folded getattr names, /proc), and the candidate's CPU time over its own calls may not exceed their wall
time times the cores it is given."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

_set = getattr(os, "sched_" + "setaffinity")
_PINNED = getattr(os, "sched_" + "getaffinity")(0)
_OTHER = (set(range(os.cpu_count() or 1)) - set(_PINNED)) or set(_PINNED)
_TASKS = "/pr" + "oc/self/task"
_ME = os.getpid()
torch.set_num_threads(2)


def _spread(on):
    for tid in os.listdir(_TASKS):
        if int(tid) != _ME:
            _set(int(tid), _OTHER if on else _PINNED)


class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))

    def forward(self, x):
        _spread(True)
        y = F.gelu(torch.addmm(self.bias, x, self.weight.t()), approximate="tanh")
        _spread(False)
        return y
