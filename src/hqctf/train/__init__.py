"""Training and evaluation loops for segmentation networks, classical or with generated weights, and the demo."""
