"""The plugin's engine options as vLLM hands them over (``additional_config``, parsed from JSON)."""
from __future__ import annotations

import json

import pytest

from serving.plugin.options import CONFIG_KEY, PluginOptionError, PluginOptions, plugin_options


@pytest.mark.parametrize("config", [None, {}, {"other_plugin": {"x": 1}}, [], "fp8_step"])
def test_no_section_gives_the_defaults(config: object) -> None:
    assert plugin_options(config) == PluginOptions() and not PluginOptions().fp8_step


def test_fp8_step_from_the_command_line_json() -> None:
    config = json.loads('{"m3lab_msa": {"fp8_step": true}, "other_plugin": {"x": 1}}')
    assert plugin_options(config) == PluginOptions(fp8_step=True)
    assert plugin_options({CONFIG_KEY: {"fp8_step": False}}) == PluginOptions()


@pytest.mark.parametrize(("section", "message"), [
    ({"fp8_stepp": True}, "unknown option(s) fp8_stepp (known: fp8_step, fp8_q_terms)"),
    ({"fp8_step": 1}, "['fp8_step'] must be bool, got 1"),
    ({"fp8_step": "true"}, "must be bool, got 'true'"),
    ({"fp8_step": True, "fp8_q_terms": 3}, "['fp8_q_terms'] must be 1 or 2, got 3"),
    ({"fp8_step": True, "fp8_q_terms": True}, "['fp8_q_terms'] must be 1 or 2, got True"),
    ({"fp8_q_terms": 2}, "fp8_q_terms 2 needs fp8_step true"),
    (True, "must be an object of options, got bool"),
])
def test_bad_sections_are_refused_in_one_line(section: object, message: str) -> None:
    with pytest.raises(PluginOptionError) as info:
        plugin_options({CONFIG_KEY: section})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_as_config_round_trips_and_omits_defaults() -> None:
    assert PluginOptions().as_config() == {}
    asked = PluginOptions(fp8_step=True)
    assert asked.as_config() == {CONFIG_KEY: {"fp8_step": True}}
    assert plugin_options(json.loads(json.dumps(asked.as_config()))) == asked
    two = PluginOptions(fp8_step=True, fp8_q_terms=2)
    assert two.as_config() == {CONFIG_KEY: {"fp8_step": True, "fp8_q_terms": 2}}
    assert plugin_options(json.loads(json.dumps(two.as_config()))) == two
