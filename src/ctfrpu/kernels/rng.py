"""A small, fast random-number generator for the numba kernels.

Why not ``np.random`` inside njit: numba's generator fetches its thread-local state through a
call on every draw and its normal sampler costs ~45 ns; the kernels draw one uniform per pulse of
a train and one normal per cell pulse (cycle-to-cycle noise), so the generator is on the hot path.

* state: ``rs`` uint64[4], xoshiro256+ (Blackman & Vigna), seeded from one 64-bit integer by
  splitmix64 -- the tile draws that integer from its ``np.random.Generator`` for every sample, so
  every draw of a run derives from the run's seed;
* uniform in [0, 1): the top 53 bits of the output;
* standard normal: Marsaglia's polar method; the second value of each pair is cached in ``nc``
  float64[2] = (has_cached, value), which :func:`seed` clears.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_U = np.uint64


def new_state() -> tuple[np.ndarray, np.ndarray]:
    """Fresh (rs, nc) arrays for the kernels (seed them with :func:`seed` before use)."""
    return np.zeros(4, dtype=np.uint64), np.zeros(2, dtype=np.float64)


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << _U(k)) | (x >> _U(64 - k))


@numba.njit(cache=True)
def seed(rs, nc, s):
    """Seed from an integer s >= 0 (splitmix64 expansion into the four state words)."""
    z = _U(s)
    for i in range(4):
        z += _U(0x9E3779B97F4A7C15)
        t = z
        t = (t ^ (t >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        t = (t ^ (t >> _U(27))) * _U(0x94D049BB133111EB)
        rs[i] = t ^ (t >> _U(31))
    nc[0] = 0.0
    nc[1] = 0.0


@numba.njit(cache=True, inline="always")
def next_u64(rs):
    s0 = rs[0]
    s1 = rs[1]
    s2 = rs[2]
    s3 = rs[3]
    result = s0 + s3
    t = s1 << _U(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3
    return result


@numba.njit(cache=True, inline="always")
def uniform(rs):
    """Uniform double in [0, 1)."""
    return float(next_u64(rs) >> _U(11)) * 1.1102230246251565e-16


@numba.njit(cache=True, inline="always")
def normal(rs, nc):
    """Standard normal (polar method, second value cached)."""
    if nc[0] != 0.0:
        nc[0] = 0.0
        return nc[1]
    while True:
        u = 2.0 * uniform(rs) - 1.0
        v = 2.0 * uniform(rs) - 1.0
        s = u * u + v * v
        if 0.0 < s < 1.0:
            break
    f = math.sqrt(-2.0 * math.log(s) / s)
    nc[0] = 1.0
    nc[1] = v * f
    return u * f


@numba.njit(cache=True)
def fill_uniform(rs, out):
    """Test helper: fill ``out`` with uniforms."""
    for i in range(out.size):
        out[i] = uniform(rs)


@numba.njit(cache=True)
def fill_normal(rs, nc, out):
    """Test helper: fill ``out`` with standard normals."""
    for i in range(out.size):
        out[i] = normal(rs, nc)
