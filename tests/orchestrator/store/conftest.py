from tests.fixtures.postgres import pg_url  # noqa: F401 - the fixture, for this folder's tests
