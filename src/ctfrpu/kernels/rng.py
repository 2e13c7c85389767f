"""A small, fast random-number generator for the numba kernels.

Why not ``np.random`` inside njit: numba's generator fetches its thread-local state through a
call on every draw and its normal sampler costs ~45 ns; the kernels draw one uniform per pulse of
a train and one normal per cell pulse (cycle-to-cycle noise), so the generator is on the hot path.

* state: ``rs`` uint64[4], xoshiro256+ (Blackman & Vigna), seeded by splitmix64 from a 64-bit
  integer; a tile draws one base seed from its ``np.random.Generator`` at construction and seeds
  sample u's stream from (base, u) (:func:`seed_stream`), so every draw of a run derives from the
  run's seed and costs no call into numpy per update;
* hot loops copy the state into local variables (:func:`next_local`, :func:`normal_local`) and
  store it back at the end -- the same stream, without a memory round trip per draw;
* uniform in [0, 1): the top 53 bits of an output;
* standard normal: the 256-layer ziggurat (Marsaglia & Tsang 2000, in the 64-bit form numpy's
  ``Generator.standard_normal`` uses: 8 bits choose the layer, 1 bit the sign, 52 bits the
  abscissa; exact tail and wedge rejection), tables computed at import;
* standard exponential: the 256-layer exponential ziggurat (numpy's form, 53-bit abscissa) --
  the geometric skips of the train drawing use it instead of -log(uniform).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .nrt import NO_NRT

_U = np.uint64


def _ziggurat_tables():
    r = 3.6541528853610088           # start of the tail
    v = 0.00492867323399             # area of every layer
    m = 2.0 ** 52
    ki = np.zeros(256, dtype=np.uint64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    ki[0] = np.uint64((dn / q) * m)
    ki[1] = 0
    wi[0] = q / m
    wi[255] = dn / m
    fi[0] = 1.0
    fi[255] = math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = np.uint64((dn / tn) * m)
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / m
    return ki, wi, fi, r


def _ziggurat_exp_tables():
    r = 7.69711747013104972          # start of the tail
    v = 0.0039496598225815571993     # area of every layer
    m = 2.0 ** 53
    ke = np.zeros(256, dtype=np.uint64)
    we = np.zeros(256)
    fe = np.zeros(256)
    de = te = r
    q = v / math.exp(-de)
    ke[0] = np.uint64((de / q) * m)
    ke[1] = 0
    we[0] = q / m
    we[255] = de / m
    fe[0] = 1.0
    fe[255] = math.exp(-de)
    for i in range(254, 0, -1):
        de = -math.log(v / de + math.exp(-de))
        ke[i + 1] = np.uint64((de / te) * m)
        te = de
        fe[i] = math.exp(-de)
        we[i] = de / m
    return ke, we, fe, r


_KI, _WI, _FI, _R = _ziggurat_tables()
_INV_R = 1.0 / _R
_KE, _WE, _FE, _RE = _ziggurat_exp_tables()


def new_state() -> np.ndarray:
    """A fresh state array for the kernels (seed it with :func:`seed` before use)."""
    return np.zeros(4, dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << _U(k)) | (x >> _U(64 - k))


@numba.njit(cache=True, **NO_NRT)
def seed(rs, s):
    """Seed from an integer s >= 0 (splitmix64 expansion into the four state words)."""
    z = _U(s)
    for i in range(4):
        z += _U(0x9E3779B97F4A7C15)
        t = z
        t = (t ^ (t >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        t = (t ^ (t >> _U(27))) * _U(0x94D049BB133111EB)
        rs[i] = t ^ (t >> _U(31))


@numba.njit(cache=True, inline="always")
def mix64(z):
    """splitmix64 finaliser of z + golden ratio (a bijection of uint64)."""
    z = z + _U(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


@numba.njit(cache=True, **NO_NRT)
def seed_stream(rs, base, counter):
    """Seed the generator for stream ``counter`` of a tile whose base seed is ``base``: the state is
    derived from mix64(base + mix64(counter)), so successive samples get unrelated streams and any
    sample's stream can be recreated from (base, counter) alone."""
    seed(rs, mix64(_U(base) + mix64(_U(counter))))


@numba.njit(cache=True, inline="always")
def next_local(s0, s1, s2, s3):
    """xoshiro256+ step on a state held in local variables: (output, s0, s1, s2, s3)."""
    result = s0 + s3
    t = s1 << _U(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@numba.njit(cache=True, inline="always")
def to_unit(r):
    """Uniform double in [0, 1) from a 64-bit output (top 53 bits)."""
    return float(r >> _U(11)) * 1.1102230246251565e-16


@numba.njit(cache=True)
def _normal_slow(s0, s1, s2, s3, idx, rabs, neg, x):
    """Ziggurat rejection part (~0.7 % of draws): tail or wedge, then a full retry if rejected."""
    while True:
        if idx == 0:                                   # tail beyond R: Marsaglia's exact method
            while True:
                r1, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
                r2, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
                xx = -_INV_R * math.log1p(-to_unit(r1))
                yy = -math.log1p(-to_unit(r2))
                if yy + yy > xx * xx:
                    z = _R + xx
                    return (-z if neg else z), s0, s1, s2, s3
        r1, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
        if (_FI[idx - 1] - _FI[idx]) * to_unit(r1) + _FI[idx] < math.exp(-0.5 * x * x):
            return x, s0, s1, s2, s3
        r, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
        idx = r & _U(0xFF)
        r >>= _U(8)
        neg = (r & _U(1)) != 0
        rabs = (r >> _U(1)) & _U(0x000FFFFFFFFFFFFF)
        x = float(rabs) * _WI[idx]
        if neg:
            x = -x
        if rabs < _KI[idx]:
            return x, s0, s1, s2, s3


@numba.njit(cache=True, inline="always")
def normal_local(s0, s1, s2, s3):
    """Standard normal on a local state: (z, s0, s1, s2, s3). ~3 ns on the fast path."""
    r, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
    idx = r & _U(0xFF)
    r >>= _U(8)
    neg = (r & _U(1)) != 0
    rabs = (r >> _U(1)) & _U(0x000FFFFFFFFFFFFF)
    x = float(rabs) * _WI[idx]
    if neg:
        x = -x
    if rabs < _KI[idx]:
        return x, s0, s1, s2, s3
    return _normal_slow(s0, s1, s2, s3, idx, rabs, neg, x)


@numba.njit(cache=True)
def _exponential_slow(s0, s1, s2, s3, idx, x):
    while True:
        r1, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
        if idx == 0:                                   # tail: memoryless, R + Exp(1)
            return _RE - math.log1p(-to_unit(r1)), s0, s1, s2, s3
        if (_FE[idx - 1] - _FE[idx]) * to_unit(r1) + _FE[idx] < math.exp(-x):
            return x, s0, s1, s2, s3
        r, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
        r >>= _U(3)
        idx = r & _U(0xFF)
        r >>= _U(8)
        x = float(r) * _WE[idx]
        if r < _KE[idx]:
            return x, s0, s1, s2, s3


@numba.njit(cache=True, inline="always")
def exponential_local(s0, s1, s2, s3):
    """Standard exponential Exp(1) on a local state: (x, s0, s1, s2, s3); ziggurat, ~2 ns.
    (-log of a uniform in distribution, without the log.)"""
    r, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
    r >>= _U(3)
    idx = r & _U(0xFF)
    r >>= _U(8)
    x = float(r) * _WE[idx]
    if r < _KE[idx]:
        return x, s0, s1, s2, s3
    return _exponential_slow(s0, s1, s2, s3, idx, x)


@numba.njit(cache=True, inline="always")
def uniform(rs):
    """Uniform double in [0, 1) on the state array."""
    r, s0, s1, s2, s3 = next_local(rs[0], rs[1], rs[2], rs[3])
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3
    return to_unit(r)


@numba.njit(cache=True, inline="always")
def normal(rs):
    """Standard normal on the state array."""
    z, s0, s1, s2, s3 = normal_local(rs[0], rs[1], rs[2], rs[3])
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3
    return z


@numba.njit(cache=True)
def fill_uniform(rs, out):
    """Fill ``out`` with uniforms (tests, benchmarks)."""
    for i in range(out.size):
        out[i] = uniform(rs)


@numba.njit(cache=True)
def fill_exponential(rs, out):
    """Fill ``out`` with Exp(1) draws (tests, benchmarks)."""
    s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
    for i in range(out.size):
        x, s0, s1, s2, s3 = exponential_local(s0, s1, s2, s3)
        out[i] = x
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3


@numba.njit(cache=True, **NO_NRT)
def fill_normal(rs, out):
    """Fill ``out`` with standard normals (tests, benchmarks)."""
    s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
    for i in range(out.size):
        z, s0, s1, s2, s3 = normal_local(s0, s1, s2, s3)
        out[i] = z
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3
