import pytest


@pytest.fixture
def tmp_trace(tmp_path):
    return tmp_path / "trace.parquet"
