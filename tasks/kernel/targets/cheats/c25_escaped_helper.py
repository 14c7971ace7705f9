"""Cheat 14 by a helper process (CPU timing): a helper busy-loops on the timing core while the references
run; the candidate pauses it for the length of its own call. The helper is double-forked into its own session
(posix_spawn(setsid=True) of a launcher that spawns it and exits, reaped at once), so it is neither in the worker's
process group nor its child: the end-of-evaluation process count and the group kill never saw it, and its CPU
time is not the worker's. Caught by: the static check (spawns processes), and the evaluator is the subreaper of
everything the candidate starts: any process of the candidate's besides its worker, found during timing or at the
end, is a cheat."""
import os
import sys

import torch
import torch.nn as nn

_HELPER = (
    "import os\n"
    "watch = int(os.environ['M3_WATCH'])\n"
    "while os.path.exists(f'/pr' f'oc/{watch}'):\n"
    "    for _ in range(100000):\n"
    "        pass\n"
)
_LAUNCH = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.executable, [sys.executable, '-c', os.environ['M3_HELPER']], dict(os.environ))\n"
    "os.write(1, str(pid).encode())\n"
)
_r, _w = os.pipe()
_env = dict(os.environ, M3_HELPER=_HELPER, M3_WATCH=str(os.getpid()))
_launcher = os.posix_spawn(sys.executable, [sys.executable, "-c", _LAUNCH], _env, setsid=True,
                           file_actions=[(os.POSIX_SPAWN_DUP2, _w, 1)])
os.close(_w)
_helper = int(os.read(_r, 64))
os.close(_r)
os.waitpid(_launcher, 0)  # reaped: no zombie child left to count
_group = os.getpgid(_helper)  # the launcher's session, not the worker's


class ModelNew(nn.Module):
    def forward(self, x):
        os.killpg(_group, 19)
        y = torch.softmax(x, dim=1)
        os.killpg(_group, 18)
        return y
