"""Models built from code with random weights, for examples and tests."""
