"""A shared-memory race (missing __syncthreads): results are usually right, so the correctness checks pass it; compute-sanitizer racecheck rejects it."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_race(x.contiguous())
