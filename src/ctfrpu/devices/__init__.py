"""Device physics: pure, vectorised, testable without torch or datasets.

* :class:`IdealDevice` -- conserves program time (aihwkit ConstantStep in time form);
* :class:`CTFDevice` -- OUR reconstruction of CTF with non-ideal program time;
* :class:`PulseTrain` -- the pulse-train design (N, pw, t_gap).
"""

from .base import DeviceState
from .ctf import CTFDevice
from .ideal import IdealDevice
from .pulses import PulseTrain
from .registry import build_device, check_run_physics, device_class, load_params_file

__all__ = ["DeviceState", "CTFDevice", "IdealDevice", "PulseTrain", "build_device", "check_run_physics", "device_class",
           "load_params_file"]
