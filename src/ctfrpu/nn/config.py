"""Configuration of an analog layer (aihwkit's ``rpu_config``): device + pulse train + update + I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import IOConfig, PulseConfig, UpdateConfig
from ..devices import CTFDevice, IdealDevice, PulseTrain, check_run_physics, device_kind
from ..errors import CtfrpuError


@dataclass
class RPUConfig:
    """Everything an :class:`~ctfrpu.nn.AnalogLinear` tile needs (aihwkit: ``SingleRPUConfig``).

    Build it directly, ``RPUConfig(device=CTFDevice(), pulses=PulseConfig(n=1000))``, or from a run
    configuration with :meth:`from_run_config`.

    Devices: any registered device (``ctfrpu.devices.registry.DEVICES``: ideal, ctf, softbounds).
    A device class defined in the user's own code implements the device protocol
    (docs/architecture.md: physics, a plan with its records and kernels) and is registered with
    :func:`ctfrpu.devices.registry.register_device`; an unregistered object raises CtfrpuError here.
    """

    device: IdealDevice | CTFDevice | object = field(default_factory=IdealDevice)
    """The device of every cell (a registered device: ideal constant-step device, OUR CTF model, ...)."""
    pulses: PulseConfig = field(default_factory=PulseConfig)
    """Pulse-train design: N slots, gap, on_time / fixed_pw mode."""
    update: UpdateConfig = field(default_factory=UpdateConfig)
    """Update mode (exact / expected / gaussian), update and BL management."""
    io: IOConfig = field(default_factory=IOConfig)
    """Forward/backward periphery (inp_res, out_res, out_noise); ideal by default."""
    gain: float = 1.0
    """Multiplier of A*B (pulse-train design compensation hook); 1 = plain SGD."""

    def __post_init__(self) -> None:
        device_kind(self.device)            # a registered device (one-line error otherwise)
        for name, cls in (("pulses", PulseConfig), ("update", UpdateConfig), ("io", IOConfig)):
            if not isinstance(getattr(self, name), cls):
                raise CtfrpuError(f"RPUConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if isinstance(self.gain, bool) or not isinstance(self.gain, (int, float)) or not math.isfinite(self.gain) \
                or self.gain <= 0:
            raise CtfrpuError(f"RPUConfig.gain must be finite and > 0, got {self.gain!r}")

    @property
    def train(self) -> PulseTrain:
        """The validated pulse train of :attr:`pulses`."""
        return PulseTrain.from_config(self.pulses)

    def make_tile(self, out_size: int, in_size: int, rng: np.random.Generator, w0: np.ndarray | None = None):
        """The :class:`~ctfrpu.tile.AnalogTile` of one layer: this config's device, pulse train,
        update, I/O and gain, every random draw from ``rng``."""
        from ..tile import AnalogTile

        return AnalogTile(out_size, in_size, self.device, self.train, self.update, self.io, rng, w0=w0,
                          gain=self.gain)

    @classmethod
    def from_run_config(cls, cfg, gain: float = 1.0) -> "RPUConfig":
        """From a :class:`ctfrpu.config.RunConfig` (device kind 'ideal' or 'ctf')."""
        if cfg.device.kind == "fp":
            raise CtfrpuError("device.kind = 'fp' has no analog tile: use torch.nn.Linear for the float baseline")
        device, _ = check_run_physics(cfg.device, cfg.pulses, cfg.update)
        return cls(device=device, pulses=cfg.pulses, update=cfg.update, io=cfg.io, gain=gain)
