"""pipeline/converters/onnx2tf_v1.py: a failed conversion names the op and quotes the root cause."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from pipeline.converters.onnx2tf_v1 import _failure_message, root_cause

LOG = """\x1b[32mINFO:\x1b[0m 3 / 9
\x1b[32mINFO:\x1b[0m \x1b[35monnx_op_type\x1b[0m: LayerNormalization\x1b[35m onnx_op_name\x1b[0m: wa/ln/LayerNormalization
ERROR: The trace log is below.
Traceback (most recent call last):
  File "onnx2tf/ops/LayerNormalization.py", line 120, in make_node
ValueError: Exception encountered when calling layer "tf.math.reduce_mean" (type TFOpLambda).
Call arguments received by layer "tf.math.reduce_mean":
TypeError: Eager execution of tf.constant with unsupported shape. Tensor [1 2 3] (converted from [1, 2, 3]) has 3 elements.
ERROR: input_onnx_file_path: model.onnx
ERROR: onnx_op_name: wa/ln/LayerNormalization
"""


def test_the_root_cause_is_the_specific_error_not_keras_generic_wrapper():
    assert root_cause(LOG.replace("\x1b[35m", "").replace("\x1b[0m", "").replace("\x1b[32m", "")).startswith(
        "TypeError: Eager execution of tf.constant with unsupported shape")


def test_the_message_names_the_op_from_onnx2tfs_own_progress_lines(tmp_path: Path):
    log = tmp_path / "convert.log"
    log.write_text(LOG)
    message = _failure_message(SystemExit(1), log, tmp_path / "absent.onnx")
    assert message.startswith(f"onnx2tf {metadata.version('onnx2tf')} failed on node 'wa/ln/LayerNormalization' "
                              "(LayerNormalization): TypeError: Eager")
    assert message.endswith(f"; full log: {log}")
