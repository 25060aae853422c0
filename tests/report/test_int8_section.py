"""report.md's and report.html's int8 section, from int8.json's content."""
from __future__ import annotations

from pipeline.report.sections import int8 as int8_report

LAYER = {"tensor": "model/tf.nn.relu_1/Relu;model/tf.nn.convolution_1/convolution", "op": "CONV_2D", "output": None,
         "snr_db": 35.6, "worst_channel_snr_db": 0.3, "max_abs_error": 0.44, "onnx_nodes": ["node_Conv_34", "node_relu_1"],
         "onnx_ops": ["Conv", "Relu"], "module": "conv2, relu"}
UNMAPPED = {**LAYER, "tensor": "PartitionedCall:0", "worst_channel_snr_db": 30.4, "onnx_nodes": [], "module": "unmapped"}
FEEDS = {**LAYER, "tensor": "model_3/tf.math.multiply_8/Mul", "worst_channel_snr_db": 31.0, "onnx_nodes": [],
         "module": "unmapped", "feeds": ["node_bn_8"], "feeds_module": "blocks.8.2"}
INT8 = {"calibration": "64 samples from calib.npz", "evaluated_on": "8 seeded random samples", "min_snr_db": 15.0,
        "layers": [LAYER, UNMAPPED, FEEDS, {**LAYER, "tensor": "model/tf.math.add_2/Add", "onnx_nodes": ["node_add"],
                                            "module": None, "worst_channel_snr_db": 40.0}], "float_layers": [LAYER], "selective": "model_int8_selective.tflite",
        "files": {"model_int8.tflite": {"size": 5200, "snr_db": 1.8, "top1_agreement": 0.41},
                  "model_int8_selective.tflite": {"size": 8304, "snr_db": 35.4, "top1_agreement": None}},
        "notes": ["int8 misses its budget <here>"], "seconds": 1.0}


def test_markdown_lists_files_and_layers_worst_first():
    text = "\n".join(int8_report.markdown(INT8))
    assert "## int8: each quantized layer" in text
    assert "| `model_int8.tflite` | 5200 | 1.8 | 0.410 |" in text
    assert "| `model_int8_selective.tflite` | 8304 | 35.4 | n/a |" in text
    assert "| tf.nn.relu_1/Relu | node_Conv_34, node_relu_1 | conv2, relu | 35.6 | 0.3 | yes |" in text
    assert "| PartitionedCall:0 | unmapped | unmapped | 35.6 | 30.4 |  |" in text
    assert "| tf.math.multiply_8/Mul | unmapped (feeds node_bn_8) | unmapped (feeds blocks.8.2) | 35.6 | 31.0 |  |" in text
    assert "| tf.math.add_2/Add | node_add | none (the model's own forward) |" in text
    assert text.index("tf.nn.relu_1") < text.index("PartitionedCall")


def test_html_escapes_and_no_section_without_int8():
    page = int8_report.html(INT8)
    assert page.startswith('<section id="int8">') and "&lt;here&gt;" in page and "<here>" not in page
    assert int8_report.html(None) == "" and int8_report.markdown(None) == []
