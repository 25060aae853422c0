"""A library's attribute replaced for a block, and the stand-in that overlays a module."""
from __future__ import annotations

import math
import types

import pytest

from pipeline.patching import Overlay, optional_module, replaced


def test_an_overlay_gives_its_own_attributes_and_the_real_object_s_for_the_rest():
    stand_in = Overlay(math, sqrt=lambda x: "ours", inner=Overlay(types, own=1))
    assert stand_in.sqrt(4) == "ours" and stand_in.pi is math.pi and stand_in.floor(2.5) == 2
    assert stand_in.inner.own == 1 and stand_in.inner.SimpleNamespace is types.SimpleNamespace
    with pytest.raises(AttributeError):
        stand_in.no_such_name  # noqa: B018


def test_replaced_is_undone_also_when_the_block_raises():
    owner = types.SimpleNamespace(value=1)
    with pytest.raises(RuntimeError), replaced(owner, "value", 2):
        assert owner.value == 2
        raise RuntimeError
    assert owner.value == 1


def test_a_module_this_version_lacks_is_none():
    assert optional_module("math") is math and optional_module("pipeline.no_such_module") is None
