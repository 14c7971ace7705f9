"""Cheat 5: patch the timers (perf_counter, CUDA events, synchronize) so a slow kernel reports ~0 ms.
Caught by: static check, and the evaluator times with its own clock in another process (the patch only fools
this process): the measured time still includes the 30 ms sleep."""
import time

import torch
import torch.nn as nn

_t = [0.0]


def _fake_clock():
    _t[0] += 1e-6
    return _t[0]


time.perf_counter = _fake_clock
time.perf_counter_ns = lambda: int(_fake_clock() * 1e9)
torch.cuda.Event.elapsed_time = lambda self, other: 0.001
torch.cuda.synchronize = lambda *a, **k: None


class ModelNew(nn.Module):
    def forward(self, x):
        time.sleep(0.03)
        return torch.softmax(x, dim=1)
