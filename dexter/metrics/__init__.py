"""The original code's ``dexter.metrics`` path: :mod:`dexter.metrics.activation_score`."""
