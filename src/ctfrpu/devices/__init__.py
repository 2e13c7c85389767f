"""Device physics: pure, vectorised, testable without torch or datasets.

* :class:`IdealDevice` -- conserves program time (aihwkit ConstantStep in time form);
* :class:`CTFDevice` -- OUR reconstruction of CTF with non-ideal program time;
* :mod:`.softbounds` -- aihwkit-style soft bounds (the worked example of a device plug-in);
* :mod:`.timing` -- timing models of a cell's coincidences (slot, burst, train);
* :class:`PulseTrain` -- the pulse-train design (N, pw, t_gap).
"""

from .base import DeviceState
from .ctf import CTFDevice
from .ideal import IdealDevice
from .pulses import PulseTrain
from .registry import DEVICES, build_device, check_run_physics, device_class, device_kind, device_kinds, load_params_file
from .timing import TIMINGS, timing_model

__all__ = ["DeviceState", "CTFDevice", "IdealDevice", "PulseTrain", "DEVICES", "TIMINGS",
           "build_device", "check_run_physics", "device_class", "device_kind", "device_kinds", "load_params_file",
           "timing_model"]
