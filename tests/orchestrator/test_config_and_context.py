"""Configuration precedence, text actions, and context packing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from orchestrator.agents.actions import from_text
from orchestrator.config import ConfigError, load_settings, with_flags
from orchestrator.tokens import estimate_tokens, pack


def test_file_roles_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m3lab.toml"
    cfg.write_text('[model]\nbase_url = "http://a/v1"\n[verifier]\nmodel = "judge"\ntemperature = 0.0\n'
                   '[budget]\nmax_iterations = 7\n[serving]\nport = 8001\n')
    monkeypatch.setenv("M3LAB_API_KEY", "secret")
    s = load_settings(cfg)
    assert s.producer.base_url == s.verifier.base_url == "http://a/v1"
    assert s.verifier.model == "judge" and s.producer.model is None and s.verifier.temperature == 0.0
    assert s.producer.api_key == "secret" and "secret" not in str(s.to_json())
    assert with_flags(s, max_iterations=3, max_hours=None).budget.max_iterations == 3
    monkeypatch.setenv("M3LAB_BASE_URL", "http://env/v1")
    assert load_settings(cfg).producer.base_url == "http://env/v1"


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "m3lab.toml"
    cfg.write_text("[budget]\nmax_iteration = 3\n")
    with pytest.raises(ConfigError, match="\\[budget\\] max_iteration: unknown key"):
        load_settings(cfg)
    cfg.write_text("[budget\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="--tokens: expected a positive integer, got 0"):
        with_flags(load_settings(None), max_tokens=0)
    with pytest.raises(ConfigError, match="--islands: expected a positive integer, got 0"):
        with_flags(load_settings(None), islands=0)


def test_islands_flag_overrides_the_search_table(tmp_path: Path) -> None:
    cfg = tmp_path / "m3lab.toml"
    cfg.write_text("[search]\nislands = 4\nmigrate_every = 3\n")
    s = load_settings(cfg)
    assert with_flags(s).search.islands == 4  # no flag: the file's value
    assert with_flags(s, islands=2).search == dataclasses.replace(s.search, islands=2)  # migrate_every kept


def test_every_config_problem_at_once_with_table_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m3lab.toml"
    cfg.write_text('runs_dir = 5\nsandbox_backend = "vm"\n[budget]\nmax_iterations = "ten"\nmax_hours = -5\n'
                   '[loop]\nmax_turns = "many"\nreview_on_failure = "yes"\n[producer]\ntemperature = "hot"\n'
                   '[model]\nbase_url = "http://x:99999/v1"\n[verifier]\nmodle = "m"\n')
    monkeypatch.setenv("M3LAB_BASE_URL", "localhost:8000")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert sorted(info.value.problems) == sorted([
        'runs_dir: expected a path (a string), got 5',
        'sandbox_backend: expected one of auto, docker, process, got "vm"',
        '[budget] max_iterations: expected a positive integer, got "ten"',
        '[budget] max_hours: expected a positive number, got -5',
        '[loop] max_turns: expected a positive integer, got "many"',
        '[loop] review_on_failure: expected true or false, got "yes"',
        '[producer] temperature: expected a number from 0 to 2, got "hot"',
        '[model] base_url: expected an http(s) URL with a valid port, e.g. "http://127.0.0.1:8000/v1", '
        'got "http://x:99999/v1"',
        '[verifier] modle: unknown key (known: api_key, base_url, frequency_penalty, max_concurrency, max_tokens, '
        'model, overload_retry_for_s, retry_for_s, stop, temperature, thinking_toggle, timeout_s, vision)',
        'M3LAB_BASE_URL: expected an http(s) URL with a valid port, e.g. "http://127.0.0.1:8000/v1", '
        'got "localhost:8000"'])
    assert "\n" not in str(info.value)
    cfg.write_text("budget = 3\n[loop]\nmax_turns = 0\n")
    monkeypatch.delenv("M3LAB_BASE_URL")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.problems == ["budget: expected a table [budget], got 3",
                                   "[loop] max_turns: expected a positive integer, got 0"]


def test_text_actions() -> None:
    text = "Run this:\n```bash\n$ pytest -q\n```\n```write src/a.py\nx = 1\n```\nDONE: wrote a.py"
    actions = from_text(text, "main.py")
    assert [a.tool for a in actions] == ["run", "write_file", "done"]
    assert actions[0].args["command"] == "pytest -q" and actions[1].args["path"] == "src/a.py"
    assert from_text("Use a ```bash block inline, not a real block.", "main.py") == []
    bare = from_text("```python\ndef f():\n    return 1\n```", "main.py")
    assert [a.tool for a in bare] == ["write_file", "done"] and bare[0].args["path"] == "main.py"
    assert from_text("```python\nprint(1)\n```", None) == []


def _conversation(rounds: int, output_chars: int) -> list:
    messages = [SystemMessage(content="system"), HumanMessage(content="task")]
    for i in range(rounds):
        messages.append(AIMessage(content="", tool_calls=[{"name": "run", "args": {"command": "ls"}, "id": f"c{i}"}]))
        messages.append(ToolMessage(content=f"{i}:" + "o" * output_chars, tool_call_id=f"c{i}"))
    return messages


def test_pack_trims_oldest_tool_output_first_then_drops_rounds() -> None:
    messages = _conversation(20, 3000)
    packed = pack(messages, 12_000)
    assert estimate_tokens(packed) <= 12_000
    assert packed[:2] == messages[:2] and packed[-1] is messages[-1]
    assert "trimmed" in str(packed[3].content)  # oldest output trimmed, its round kept
    small = pack(messages, 3_000)
    assert "dropped" in str(small[2].content) and estimate_tokens(small) <= 3_000
    for i, m in enumerate(small):  # every tool answer still follows its call
        if isinstance(m, ToolMessage):
            assert isinstance(small[i - 1], (AIMessage, ToolMessage))
    assert pack(messages[:4], 10_000) == messages[:4]
