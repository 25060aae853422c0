"""Batch runs: audit many models in one command (`python -m pipeline batch MODEL...`).

Each model runs the whole pipeline in a child process of its own (task.py), so the memory
TensorFlow, ONNX Runtime and torch hold is returned when it ends. The same task function
runs on a local process pool or on Ray (executors.py); neither is a scheduler of ours.
"""
