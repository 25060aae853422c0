"""diagnose: check a hand-written Keras port against its PyTorch source.

Layers are mapped by their weights, attributes compared per mapped pair (epsilon,
padding placement, slopes, ...), outputs compared layer by layer against the float64
oracle, and each mismatch is corrected alone to measure how much error it explains.
"""
