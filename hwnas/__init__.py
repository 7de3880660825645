"""hwnas: hardware-aware neural architecture search for the Determined training platform."""

__version__ = "0.1.0"
