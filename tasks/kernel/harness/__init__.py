"""The kernel evaluation harness: a self-contained package (stdlib + torch, relative imports only) that is
copied next to each evaluation so it runs the same way in a Docker sandbox, the process sandbox, or a plain
subprocess. Entry points: `python -m harness.evaluate` (the parent, holds the secret seed and computes the
verdict) and `python -m harness.worker` (a child that imports one model: the reference or the candidate)."""
