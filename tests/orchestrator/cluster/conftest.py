from tests.fixtures.postgres import pg_url  # noqa: F401 - fixtures for this folder's tests
from tests.fixtures.ray_cluster import ray_cluster  # noqa: F401
