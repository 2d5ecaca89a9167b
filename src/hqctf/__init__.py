"""hqctf: hybrid quantum-classical training (Quantum Parameter Generation) of radiotherapy segmentation networks."""

__version__ = "0.1.0"
