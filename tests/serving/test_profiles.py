"""Profiles and the launch commands they produce (no server needed)."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.config import ServingConfig, ServingConfigError, config_from_mapping
from serving.launch import LaunchError, LaunchOptions, build_launch
from serving.profiles import ProfileError, list_profiles, load_profile, parse_profile


@pytest.fixture()
def config(tmp_path: Path) -> ServingConfig:
    return ServingConfig(vllm_venv=tmp_path / "venv", models_dir=tmp_path / "models", state_dir=tmp_path / "state")


def _flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_builtin_profiles_load():
    assert {"embedded", "m3"} <= set(list_profiles())
    for name in list_profiles():
        load_profile(name)


def test_m3_launch_uses_gpus_parsers_and_msa_plugin(config):
    plan = build_launch(load_profile("m3"), config, LaunchOptions(gpus=4), dry_run=True)
    argv = plan.argv
    assert argv[:3] == (str(config.vllm_python), "-m", "vllm.entrypoints.openai.api_server")
    assert _flag(argv, "--model") == "MiniMaxAI/MiniMax-M3"
    assert _flag(argv, "--tensor-parallel-size") == "4" and "--enable-expert-parallel" in argv
    assert (plan.tensor_parallel, plan.expert_parallel, plan.device) == (4, 4, "cuda")
    assert _flag(argv, "--max-model-len") == "1048576"
    assert _flag(argv, "--tool-call-parser") == "minimax_m3" and "--enable-auto-tool-choice" in argv
    assert _flag(argv, "--reasoning-parser") == "minimax_m3"
    assert _flag(argv, "--block-size") == "128" and _flag(argv, "--kv-cache-dtype") == "auto"
    assert plan.env["VLLM_PLUGINS"] == "m3lab_msa"


def test_m3_overrides(config):
    options = LaunchOptions(gpus=8, tensor_parallel=2, model="/models/m3", max_model_len=131072,
                            kv_cache_dtype="fp8", msa_plugin=False, port=9001)
    plan = build_launch(load_profile("m3"), config, options, dry_run=True)
    assert _flag(plan.argv, "--model") == "/models/m3"
    assert _flag(plan.argv, "--tensor-parallel-size") == "2" and plan.expert_parallel == 2
    assert _flag(plan.argv, "--max-model-len") == "131072" and _flag(plan.argv, "--kv-cache-dtype") == "fp8"
    assert plan.env["VLLM_PLUGINS"] == "" and plan.base_url == "http://127.0.0.1:9001/v1"


def test_m3_fp8_step_goes_to_the_plugin_as_additional_config(config):
    """--msa-fp8-step reaches our plugin through vLLM's --additional-config (serving/plugin/options.py reads it
    back); it is refused at launch where it could not run (no fp8 cache, no plugin)."""
    from serving.plugin.options import plugin_options

    plain = build_launch(load_profile("m3"), config, LaunchOptions(gpus=4), dry_run=True)
    assert "--additional-config" not in plain.argv
    options = LaunchOptions(gpus=4, kv_cache_dtype="fp8", msa_fp8_step=True)
    argv = build_launch(load_profile("m3"), config, options, dry_run=True).argv
    assert plugin_options(json.loads(_flag(argv, "--additional-config"))).fp8_step
    with pytest.raises(LaunchError, match="--kv-cache-dtype fp8"):
        build_launch(load_profile("m3"), config, LaunchOptions(gpus=4, msa_fp8_step=True), dry_run=True)
    with pytest.raises(LaunchError, match="needs the MSA plugin"):
        build_launch(load_profile("m3"), config, dataclasses.replace(options, msa_plugin=False), dry_run=True)
    profile = dataclasses.replace(load_profile("m3"), kv_cache_dtype="fp8", msa_fp8_step=True)
    assert "--additional-config" in build_launch(profile, config, LaunchOptions(gpus=4), dry_run=True).argv
    off = build_launch(profile, config, LaunchOptions(gpus=4, msa_fp8_step=False), dry_run=True)
    assert "--additional-config" not in off.argv
    two = build_launch(load_profile("m3"), config, dataclasses.replace(options, msa_fp8_q_terms=2), dry_run=True)
    assert plugin_options(json.loads(_flag(two.argv, "--additional-config"))).fp8_q_terms == 2
    with pytest.raises(LaunchError, match="needs --msa-fp8-step"):
        build_launch(load_profile("m3"), config, LaunchOptions(gpus=4, kv_cache_dtype="fp8", msa_fp8_q_terms=2),
                     dry_run=True)


def test_m3_without_gpus(config, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    dry = build_launch(load_profile("m3"), config, LaunchOptions(), dry_run=True)
    assert dry.tensor_parallel == 8 and dry.notes  # the profile's default_gpus, with a note saying so
    with pytest.raises(LaunchError, match="needs GPUs"):
        build_launch(load_profile("m3"), config, LaunchOptions())


def test_embedded_launch_on_cpu(config, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan = build_launch(load_profile("embedded"), config, LaunchOptions())
    assert _flag(plan.argv, "--model") == str(config.models_dir / "smollm2-135m-instruct")
    assert _flag(plan.argv, "--served-model-name") == "smollm2-135m-instruct"
    assert _flag(plan.argv, "--tool-call-parser") == "hermes" and "--enable-auto-tool-choice" in plan.argv
    assert "--tensor-parallel-size" not in plan.argv and "--gpu-memory-utilization" not in plan.argv
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and plan.env["VLLM_PLUGINS"] == ""
    assert plan.base_url == "http://127.0.0.1:8000/v1"


def test_max_model_len_limit(config):
    with pytest.raises(LaunchError, match="max-model-len"):
        build_launch(load_profile("m3"), config, LaunchOptions(gpus=8, max_model_len=2_000_000), dry_run=True)


def test_invalid_profile_lists_every_problem():
    with pytest.raises(ProfileError) as info:
        parse_profile({"name": "x", "max_model_len": True, "colour": "red", "parallel": "many"})
    message = str(info.value)
    for part in ("unknown key 'colour'", "missing key 'model'", "missing key 'served_model_name'",
                 "max_model_len must be int", "parallel must be"):
        assert part in message


def test_user_profile_file(tmp_path, config):
    path = tmp_path / "qwen.toml"
    path.write_text('name = "qwen"\nmodel = "Qwen/Qwen3-8B"\nserved_model_name = "qwen3"\nmax_model_len = 32768\n'
                    'tool_call_parser = "hermes"\nreasoning_parser = "qwen3"\n')
    plan = build_launch(load_profile(str(path)), config, LaunchOptions())
    assert _flag(plan.argv, "--model") == "Qwen/Qwen3-8B" and _flag(plan.argv, "--reasoning-parser") == "qwen3"
    assert load_profile("qwen", extra_dir=tmp_path).served_model_name == "qwen3"
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("nope")


def test_serving_config_table():
    cfg = config_from_mapping({"port": 8123, "vllm_venv": "~/v", "ready_timeout_s": 5})
    assert cfg.port == 8123 and cfg.vllm_python == Path("~/v").expanduser() / "bin" / "python"
    with pytest.raises(ServingConfigError) as info:
        config_from_mapping({"port": "80", "bogus": 1})
    assert "unknown key 'bogus'" in str(info.value) and "port must be an integer" in str(info.value)


def test_cli_dry_run_prints_the_command(monkeypatch):
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["serve", "--profile", "m3", "--dry-run", "--gpus", "8", "--port", "8100"])
    assert result.exit_code == 0, result.output
    line = [text for text in result.stdout.splitlines() if "api_server" in text][0]
    words = shlex.split(line)
    assert words[0] == "VLLM_PLUGINS=m3lab_msa"
    assert words[words.index("--tensor-parallel-size") + 1] == "8" and words[words.index("--port") + 1] == "8100"
    bad = CliRunner().invoke(app, ["serve", "--profile", "nope", "--dry-run"])
    assert bad.exit_code == 1 and "unknown profile" in bad.output
    fp8 = CliRunner().invoke(app, ["serve", "--profile", "m3", "--dry-run", "--gpus", "4", "--kv-cache-dtype", "fp8",
                                   "--msa-fp8-step"])
    assert fp8.exit_code == 0 and "--additional-config" in fp8.stdout, fp8.output
    refused = CliRunner().invoke(app, ["serve", "--profile", "m3", "--dry-run", "--gpus", "4", "--msa-fp8-step"])
    assert refused.exit_code == 1 and "fp8 e4m3 KV cache" in refused.output
    two = CliRunner().invoke(app, ["serve", "--profile", "m3", "--dry-run", "--gpus", "4", "--kv-cache-dtype", "fp8",
                                   "--msa-fp8-step", "--msa-fp8-q-terms", "2"])
    assert two.exit_code == 0 and '"fp8_q_terms":2' in two.stdout, two.output
    lone = CliRunner().invoke(app, ["serve", "--profile", "m3", "--dry-run", "--gpus", "4", "--kv-cache-dtype", "fp8",
                                    "--msa-fp8-q-terms", "2"])
    assert lone.exit_code == 1 and "needs --msa-fp8-step" in lone.output


@pytest.mark.vllm
def test_profile_commands_are_accepted_by_the_installed_vllm(tmp_path):
    """The printed launches parse with vLLM's own serve parser; parser names exist in its registries."""
    from serving.config import load_serving_config
    from serving.launch import check_with_vllm
    from tests.fixtures.vllm_server import require_vllm_install

    require_vllm_install()
    config = load_serving_config()
    m3 = build_launch(load_profile("m3"), config, LaunchOptions(gpus=8), dry_run=True)
    embedded = build_launch(load_profile("embedded"), config, LaunchOptions())
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('name = "bad"\nmodel = "x"\nserved_model_name = "x"\nmax_model_len = 8\n'
                        'tool_call_parser = "no_such_parser"\n')
    bad = build_launch(load_profile(str(bad_file)), config, LaunchOptions())
    fp8_step = build_launch(load_profile("m3"), config,
                            LaunchOptions(gpus=8, kv_cache_dtype="fp8", msa_fp8_step=True), dry_run=True)
    typo = dataclasses.replace(m3, argv=(*m3.argv, "--additional-config", '{"m3lab_msa": {"fp8_stepp": true}}'))
    results = check_with_vllm([m3, embedded, bad, fp8_step, typo], config)
    assert results[0].ok, results[0].problems
    assert results[1].ok, results[1].problems
    assert not results[2].ok and "no_such_parser" in " ".join(results[2].problems)
    assert results[3].ok, results[3].problems  # --additional-config as JSON, --kv-cache-dtype fp8
    assert not results[4].ok and "unknown option(s) fp8_stepp" in " ".join(results[4].problems)


def test_m3_on_one_gpu_has_no_expert_parallel(config):
    plan = build_launch(load_profile("m3"), config, LaunchOptions(gpus=1))
    assert _flag(plan.argv, "--tensor-parallel-size") == "1" and "--enable-expert-parallel" not in plan.argv
    assert plan.device == "cuda" and _flag(plan.argv, "--gpu-memory-utilization") == "0.92"
