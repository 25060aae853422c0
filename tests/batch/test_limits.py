import pytest

from pipeline.batch.limits import GB, MemoryPlan, default_jobs, parse_memory
from pipeline.errors import UsageError


def test_default_and_per_model_limits():
    plan = parse_memory(["3", "big=12.5"])
    assert plan.limit_bytes("small") == 3 * GB
    assert plan.limit_bytes("big") == int(12.5 * GB)
    assert plan.request_bytes("big") == int(12.5 * GB)


def test_without_memory_gb_the_limit_guards_the_machine_and_2gb_is_reserved():
    import psutil

    plan = parse_memory(None)
    assert 0 < plan.limit_bytes("any") < psutil.virtual_memory().total
    assert plan.request_bytes("any") == 2 * GB


@pytest.mark.parametrize("value", ["0", "-1", "lots", "m=", "m=x"])
def test_bad_memory_values(value):
    with pytest.raises(UsageError, match=f"--memory-gb {value}: expected a positive number of GB"):
        parse_memory([value])


def test_default_jobs_fits_cores_and_memory():
    import os

    assert 1 <= default_jobs(MemoryPlan()) <= (os.cpu_count() or 1)
    assert default_jobs(MemoryPlan(default_gb=10_000)) == 1
