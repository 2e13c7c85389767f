"""Pulse-train design: compensation of the CTF program-time bias and the design helper.

Both are OUR reconstruction (the system paper's compensation technique is not public):

* :mod:`ctfrpu.design.compensation` -- ``compensation_gain(device, train, cfg)``: the gain on A*B;
* :mod:`ctfrpu.design.helper` -- predicted bias and variance of the update over (N, t_gap).
"""

from .compensation import U_TYP, compensation_gain, efficiency, gain_for

__all__ = ["U_TYP", "compensation_gain", "efficiency", "gain_for"]
