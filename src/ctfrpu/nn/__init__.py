"""PyTorch front end in aihwkit's shape.

* ``AnalogLinear``, ``AnalogConv2d``: weights on an analog tile, bias digital; ``state_dict``,
  ``copy.deepcopy`` and ``torch.save`` carry the tile's full state; writes into ``.weight``
  program the tile;
* ``AnalogSGD``, ``AnalogOptimizer(torch.optim.X, ...)``: the tile applies its own pulsed update
  (no weight gradient), the digital parameters follow the optimiser;
* ``AnalogSequential``, ``convert_to_analog(model, rpu_config)``;
* ``set_thread_pinning``: the layers run their tile calls with one BLAS / torch thread (default).
"""

from .config import RPUConfig
from .conv import AnalogConv2d
from .modules import AnalogContext, AnalogLayerBase, AnalogLinear
from .optim import AnalogOptimizer, AnalogOptimizerMixin, AnalogSGD
from .sequential import AnalogSequential, convert_to_analog
from .threads import set_thread_pinning, thread_pinning
from .weight import AnalogWeight

__all__ = ["AnalogContext", "AnalogConv2d", "AnalogLayerBase", "AnalogLinear", "AnalogOptimizer",
           "AnalogOptimizerMixin", "AnalogSGD", "AnalogSequential", "AnalogWeight", "RPUConfig", "convert_to_analog",
           "set_thread_pinning", "thread_pinning"]
