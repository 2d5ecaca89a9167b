"""Inference outputs: predicted label maps exported for treatment-planning systems."""
