"""The device lab: what a device researcher does with one cell, without any training --
program-time response (``response``), a pulse-by-pulse trace (``trace``) and the plot of a fit to
measured data (``fit_plot``; the fit itself is :mod:`ctfrpu.devices.fit`). Our CTF model
(docs/science.md §4)."""
