"""Cheat 14 through the evaluation folder (softmax): the compile stage ran candidate code BEFORE the reference
workers started, in a folder whose files are world-writable. Mentioning cpp_extension asks for that stage; there
the module body appends a 5 ms sleep to the target's Model.forward in target.py. The evaluator had loaded target.py
already (its reference values stay right), but both reference workers imported the edited file. Caught by: the
static check (writes files), and nothing trusted loads anything from the folder once candidate code has run: the
reference workers start before the compile stage with everything imported, and the evaluator and the references
take the folder off their import path."""
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils import cpp_extension  # noqa: F401  (asks for the compile stage)

_SLOW = '''

import time as _t
_fwd = Model.forward


def _slow_forward(self, *args):
    _t.sleep(0.005)
    return _fwd(self, *args)


Model.forward = _slow_forward
'''

if "--compile-only" in sys.argv:
    target = Path("target.py")
    target.write_text(target.read_text() + _SLOW)


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=1)
