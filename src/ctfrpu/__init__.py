"""ctfrpu: on-chip DNN training on RPU crossbars of Charge Trap Flash (CTF) devices.

Layers (data flows one way, lower layers never import higher ones)::

    units, errors                    small shared helpers
    devices/   device physics        pure vectorised functions + parameter dataclasses
    devices/pulses.py                pulse-train design (N, pw, t_gap)
    kernels/   update kernels        event-driven stochastic pulse-train update (numba)
    tile.py    crossbar tile         forward / backward / update
    nn/        PyTorch layer + optimiser (AnalogLinear, AnalogSGD)
    training/  training loop         fused batch-1 MLP engine, runs, metrics
    experiments/, sweep/, report/    device experiments, sweeps, compensation, ablation, report
    cli/       command line
"""

__version__ = "0.1.0"
