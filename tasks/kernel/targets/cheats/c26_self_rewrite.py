"""Cheat 16 inside one evaluation (time of check / time of use): the file the static layer checks is not
the file that runs. Mentioning cpp_extension makes the harness run a compile stage, which imports this module in a
compile worker BEFORE the candidate worker imports it again; there the module body rewrites its own file into a
version the static layer rejects (cheat 9a: load the target and call the reference Model), which the candidate
worker then imports. The run's database and any reviewer only ever see this file. Caught by: the static check
(writes files), and the evaluator hashes the candidate's folder when it checks it and again before every later
process loads it and at the end."""
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils import cpp_extension  # noqa: F401  (asks for the compile stage)

_SWAP = '''
import importlib.util
import torch.nn as nn

_spec = importlib.util.spec_from_file_location("t", "target.py")
_t = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_t)


class ModelNew(nn.Module):
    def __init__(self, *args):
        super().__init__()
        self.ref = _t.Model(*args)

    def forward(self, x):
        return self.ref(x)
'''

if "--compile-only" in sys.argv:
    Path(__file__).write_text(_SWAP)


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=1)
