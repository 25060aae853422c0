"""The TF graph view holds plain values, so it crosses from the TF worker to a process without TensorFlow."""
import pickle

import pytest

from pipeline.lint.tf_graph import _plain


def test_attr_values_become_plain_python_values():
    attr_value = pytest.importorskip("tensorflow.core.framework.attr_value_pb2")
    AttrValue = attr_value.AttrValue  # noqa: N806
    assert _plain(AttrValue(s=b"SAME")) == "SAME"
    assert _plain(AttrValue(f=0.001)) == pytest.approx(0.001)
    assert _plain(AttrValue(i=3)) == 3 and _plain(AttrValue(b=True)) is True
    assert _plain(AttrValue(list=AttrValue.ListValue(i=[1, 2, 2, 1]))) == [1, 2, 2, 1]
    for value in (_plain(AttrValue(s=b"VALID")), _plain(AttrValue(list=AttrValue.ListValue(i=[1])))):
        assert type(pickle.loads(pickle.dumps(value))).__module__ == "builtins"
