"""pipeline/convert/stage.py: a converted model must keep every dynamic axis the config asks for."""
from __future__ import annotations

import pytest

from pipeline.converters.base import TFTensor
from pipeline.convert.stage import check_still_dynamic
from pipeline.errors import ConversionError
from pipeline.inputs import TensorSpec
from pipeline.runners.layout import Layout
from pipeline.runners.tf_io import TensorBinding


def test_a_conversion_that_fixed_a_dynamic_axis_is_a_failed_attempt():
    spec = TensorSpec("x", (1, 3, 8, 8), "float32", dynamic={0: "batch", 2: "height"})
    channel_last = TensorBinding("x", "x", 0, Layout((0, 2, 3, 1), "shape"))
    check_still_dynamic([spec], [channel_last], [TFTensor("x", (None, None, 8, 3))])
    with pytest.raises(ConversionError, match=r"^the conversion came out static where the config asks for dynamic: "
                                              r"input 'x' axis 2 \('height'\) is fixed at 8 in the TF model$"):
        check_still_dynamic([spec], [channel_last], [TFTensor("x", (None, 8, 8, 3))])
