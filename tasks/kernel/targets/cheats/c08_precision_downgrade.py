"""Cheat 8: silently compute in bfloat16 and cast back to float32. Caught by: per-dtype tolerances of the
reference's dtype (fp32: 1e-4), output dtype check."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.softmax(x.to(torch.bfloat16), dim=1).to(x.dtype)
