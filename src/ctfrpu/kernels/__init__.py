"""Event-driven numba kernels of the stochastic pulse-train update (used by :mod:`ctfrpu.tile`).

* :mod:`.rng`      -- xoshiro256+ with ziggurat normals/exponentials; one stream per sample,
  seeded from (tile base seed, sample counter);
* :mod:`.trains`   -- sample preparation (A, B, BL, probabilities) and train drawing: geometric
  skipping in lock step, thinning (the sparser side in full, the other only where it can coincide),
  counting sorts into CSR by slot (rows) and by column;
* :mod:`.exact`    -- the pulse-exact update: one device pulse per coincidence, each cell's pulses
  in time order, CTF relaxation over each real gap;
* :mod:`.expected` -- the expected (mean) and Gaussian update modes, dense over active cells;
* :mod:`.ctfmath`  -- the CTF pulse closed form with per-train constants (checked against the
  device's ``pulse_math_nb``);
* :mod:`.cells`    -- per-cell records (one cache line per pulse).

Every kernel is ``@njit(cache=True)``: the first import on a machine compiles them (about 10-20 s
in all), later runs load the cache from ``__pycache__``.
"""
