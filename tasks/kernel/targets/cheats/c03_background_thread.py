"""Cheat 3: return an empty tensor at once and fill it from a background thread, so a timer stopping at return
sees no work. (The GPU form launches on a side stream.) Caught by: static check (threading), and values at
secret positions are read right after the call returns, before the thread has written them."""
import threading
import time

import torch
import torch.nn as nn


def _fill(out, x):
    time.sleep(0.05)
    out.copy_(torch.softmax(x, dim=1))


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        threading.Thread(target=_fill, args=(out, x.clone())).start()
        return out
