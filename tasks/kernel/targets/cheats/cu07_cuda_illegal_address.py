"""A crash, not a cheat: a wild write (illegal address). The candidate's worker dies with the CUDA error; the evaluation is rejected and the next evaluation runs in fresh processes, unaffected."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_illegal_address(x.contiguous())
