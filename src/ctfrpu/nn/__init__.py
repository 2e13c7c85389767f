"""PyTorch front end in aihwkit's shape: ``AnalogLinear`` (weights on an analog tile, bias
digital) and ``AnalogSGD`` (the tile applies its own pulsed update; no weight gradient)."""

from .config import RPUConfig
from .modules import AnalogContext, AnalogLinear
from .optim import AnalogSGD

__all__ = ["AnalogContext", "AnalogLinear", "AnalogSGD", "RPUConfig"]
