"""pipeline/runners/base.py: feeds are checked against the inputs' example shapes, dynamic axes taking any size."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import RunnerError
from pipeline.inputs import TensorSpec
from pipeline.runners.base import Runner


class Echo(Runner):
    name = "echo"

    def _activate_impl(self) -> None:
        pass

    def _infer_impl(self, feed):
        return {"output": feed["x"]}


def test_a_dynamic_axis_takes_any_size_and_a_static_one_only_its_own():
    runner = Echo([TensorSpec("x", (1, 3, 8, 8), "float32", dynamic={0: "batch", 2: "height"})], ["output"])
    runner.activate()
    assert runner.infer({"x": np.zeros((3, 3, 5, 8), np.float32)})["output"].shape == (3, 3, 5, 8)
    with pytest.raises(RunnerError, match=r"echo: input 'x' has shape \[3, 3, 5, 9\], expected \['batch', 3, 'height', 8\]"):
        runner.infer({"x": np.zeros((3, 3, 5, 9), np.float32)})
