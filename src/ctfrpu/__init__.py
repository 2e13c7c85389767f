"""ctfrpu: on-chip DNN training on RPU crossbars of Charge Trap Flash (CTF) devices.

Layers (data flows one way, lower layers never import higher ones)::

    errors, units, config, store, data/, outfiles, plotting, arms    shared leaves
    kernels/     device-independent sampling of the stochastic pulse-train update (numba)
    devices/     device plug-ins: physics (pure, vectorised) + their update kernels; pulse
                 trains (devices/pulses.py), timing models, registry, fitting
    design/      compensation, design helper, explore map      lab/  device response, trace, fit plot
    tile.py      crossbar tile: forward / backward / pulsed update
    nn/          PyTorch layer + optimiser (AnalogLinear, AnalogSGD)
    training/    fused batch-1 MLP engine, runs, checkpoints
    experiments/, sweep/   update statistics, ablation; the Dask sweep engine
    report/      HTML report, figures, verdicts (from the store)
    pipeline/    reproduce: sweep -> ablation -> report
    cli/         command line

docs/architecture.md has the ranks; tests/test_layers.py enforces them.
"""

__version__ = "0.1.0"
