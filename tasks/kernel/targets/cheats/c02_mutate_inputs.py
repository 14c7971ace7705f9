"""Cheat 2: compute in place on the input (saves an allocation; corrupts the caller's tensor).
Caught by: the evaluator compares the inputs the worker hands back with its own copy."""
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        x.sub_(x.max(dim=1, keepdim=True).values).exp_()
        return x.div_(x.sum(dim=1, keepdim=True))
