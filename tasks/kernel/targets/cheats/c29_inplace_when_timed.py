"""Cheat 2 + 12 (softmax): clobber the caller's input only when timed. A correctness model sees at most `trials`
calls (and its inputs used to be views of the harness's message buffer, `x._base is not None`: a tell, now gone);
past its second call this model is being timed, and it computes in place in its input. Correctness calls see an
honest kernel, and the timed calls used to check only the output. Caught by: the inputs as the timed call left
them are read back at secret positions after every timed call."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls <= 2:
            return torch.softmax(x, dim=1)
        x.sub_(x.max(dim=1, keepdim=True).values).exp_()
        return x.div_(x.sum(dim=1, keepdim=True))
