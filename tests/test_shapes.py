"""pipeline/shapes.py: the sizes a dynamic dimension may take, the traced example and the audited shapes."""
from __future__ import annotations

import pytest

from pipeline import shapes
from pipeline.config import DimConstraint
from pipeline.inputs import TensorSpec

IMAGE = TensorSpec("x", (1, 3, 64, 64), "float32", dynamic={0: "batch", 2: "height", 3: "width"})
TEXT = [TensorSpec("ids", (1, 32), "int64", dynamic={0: "batch", 1: "sequence"}),
        TensorSpec("mask", (1, 32), "int64", dynamic={0: "batch", 1: "sequence"})]


@pytest.mark.parametrize("constraint, target, odd, expected", [
    (DimConstraint(), 48, True, 47),  # odd first, the nearest below on a tie
    (DimConstraint(multiple_of=4), 49, True, 48),  # no odd size is allowed: the nearest multiple
    (DimConstraint(min=16, max=40), 48, False, 40),
    (DimConstraint(min=5, multiple_of=4), 2, False, 8),
    (DimConstraint(min=3, max=3), 7, False, 3),
])
def test_nearest_allowed(constraint, target, odd, expected):
    assert shapes.nearest_allowed(constraint, target, odd) == expected


def test_default_shapes_move_batch_then_the_others_one_of_them_odd():
    assert shapes.default_audit_shapes([IMAGE], {}) == [{"batch": 3}, {"batch": 2, "height": 47, "width": 80}]
    assert shapes.default_audit_shapes(TEXT, {}) == [{"batch": 3}, {"batch": 2, "sequence": 23}]


def test_default_shapes_respect_the_constraints():
    dims = {"height": {"multiple_of": 4, "max": 64}, "width": {"multiple_of": 4, "max": 64}, "batch": {"max": 2}}
    assert shapes.default_audit_shapes([IMAGE], dims) == [{"batch": 2}, {"batch": 2, "height": 48}]  # width stays at its max, the example


def test_a_batch_only_model_gets_two_batch_sizes_and_a_static_one_none():
    spec = TensorSpec("x", (1, 10), "float32", dynamic={0: "batch"})
    assert shapes.default_audit_shapes([spec], {}) == [{"batch": 3}, {"batch": 2}]
    assert shapes.audit_shapes([TensorSpec("x", (1, 10), "float32")], {}, None) == []


def test_the_configs_audit_shapes_replace_the_defaults():
    assert shapes.audit_shapes([IMAGE], {}, [{"height": 32}]) == [{"height": 32}]


def test_dimensions_of_size_one_are_traced_at_the_smallest_allowed_size_from_two():
    assert shapes.export_sizes([IMAGE], {}) == {"batch": 2}
    assert shapes.export_sizes([IMAGE], {"batch": {"multiple_of": 4}}) == {"batch": 4}
    assert shapes.export_sizes([TensorSpec("x", (4, 3), "float32", dynamic={0: "batch"})], {}) == {}


def test_labels_name_the_sizes():
    assert shapes.label({"batch": 3, "height": 47}) == "batch3_height47" and shapes.label({}) == ""
