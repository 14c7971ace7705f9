"""Shared fixtures. Service fixtures (Docker engine, embedded vLLM server) live in tests/fixtures/ and are
loaded here so every test folder can use them."""
pytest_plugins = ["tests.fixtures.docker_engine", "tests.fixtures.vllm_server"]
