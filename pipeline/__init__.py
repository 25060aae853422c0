"""PyTorch -> ONNX -> TensorFlow (SavedModel, Keras, TFLite) with a three-way numeric audit."""

__version__ = "0.1.0"
