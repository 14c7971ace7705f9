"""The plugin's own engine options, read from vLLM's ``additional_config`` (``--additional-config``).

vLLM passes ``additional_config`` to every worker and hashes it into the compile cache key, which is what an option
that changes the attention kernel's arithmetic needs (a different option must not reuse a compiled graph). Ours live
under one key so they cannot collide with another plugin's:

    vllm serve ... --kv-cache-dtype fp8 --additional-config '{"m3lab_msa": {"fp8_step": true}}'
    vllm serve ... --kv-cache-dtype fp8 --additional-config '{"m3lab_msa": {"fp8_step": true, "fp8_q_terms": 2}}'

No vLLM import here (the launcher and the tests read it too).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

CONFIG_KEY = "m3lab_msa"
"""Our section of vLLM's ``additional_config`` (the plugin's entry-point name)."""


class PluginOptionError(ValueError):
    """``additional_config[CONFIG_KEY]`` names an unknown option or gives one a value of the wrong type."""


@dataclass(frozen=True)
class PluginOptions:
    fp8_step: bool = False
    """With an fp8 e4m3 KV cache on SM90: the prefill's tile-outer step runs FP8 wgmma (Q quantised per row on
    chip, P in e4m3; kernels/msa NOTES v18, v18p). H200, 128K prefill: f = 1 1.24x, f = 0.9 1.18x the bf16 widened
    path on the same fp8 cache; output error vs the fp32 reference on the dequantised cache ~3.5e-2 instead of
    ~2.8e-3, hence opt-in."""
    fp8_q_terms: int = 1
    """With ``fp8_step``: 2 carries each Q row as two e4m3 terms at one scale (kernels/msa NOTES v18z), so only P's
    rounding is left: on peaked attention the step's error falls from 6.9e-2 to 7.7e-3 (the bf16 path: 1.7e-3) for
    twice the S product's tensor work (H200, 128K, f = 0.9: 17.7 ms vs 15.5 for the one-term step and 20.3 for the
    bf16 step)."""

    def __post_init__(self) -> None:
        if type(self.fp8_q_terms) is not int or self.fp8_q_terms not in (1, 2):
            raise PluginOptionError(f"additional_config[{CONFIG_KEY!r}]['fp8_q_terms'] must be 1 or 2, got "
                                    f"{self.fp8_q_terms!r}")
        if self.fp8_q_terms == 2 and not self.fp8_step:
            raise PluginOptionError(f"additional_config[{CONFIG_KEY!r}]: fp8_q_terms 2 needs fp8_step true")

    def as_config(self) -> dict[str, Any]:
        """The ``additional_config`` that asks for these options (only what differs from the defaults)."""
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        return {CONFIG_KEY: changed} if changed else {}


def plugin_options(additional_config: object) -> PluginOptions:
    """Our options from vLLM's ``additional_config`` (a dict; anything else, or no section: the defaults).
    Raises PluginOptionError, one line, for an unknown option or a value of the wrong type."""
    section = additional_config.get(CONFIG_KEY) if isinstance(additional_config, Mapping) else None
    if section is None:
        return PluginOptions()
    if not isinstance(section, Mapping):
        raise PluginOptionError(f"additional_config[{CONFIG_KEY!r}] must be an object of options, got "
                                f"{type(section).__name__}")
    known = {f.name: f for f in fields(PluginOptions)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise PluginOptionError(f"additional_config[{CONFIG_KEY!r}]: unknown option(s) {', '.join(unknown)} "
                                f"(known: {', '.join(known)})")
    for name, value in section.items():
        if not isinstance(value, type(known[name].default)):
            raise PluginOptionError(f"additional_config[{CONFIG_KEY!r}][{name!r}] must be "
                                    f"{type(known[name].default).__name__}, got {value!r}")
    return PluginOptions(**section)
