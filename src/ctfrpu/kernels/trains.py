"""Drawing the stochastic row/column pulse trains (numba, event-driven).

Shared by every update kernel. The pieces, all ``@njit(cache=True)`` and allocation-free (the
tile owns the buffers):

* :func:`prepare` -- validate one sample (x, d), choose the train length BL and the gains A, B
  (update management / BL management, aihwkit's rules) and fill the per-row probability p_i,
  per-column q_j and the signs;
* :func:`draw_events` -- draw every unit's ON slots as a Bernoulli process (geometric skipping
  with exponential-ziggurat draws for sparse units, in lock step; one draw per slot for dense
  ones), over all BL slots or only over a given subset of slots (see "thinning" below);
* :func:`events_by_slot` (rows) / :func:`events_by_unit` (columns) -- counting sorts of the events
  into CSR by slot / by unit.

Thinning. A cell pulse needs its row AND its column ON in the same slot. The kernels draw the
side with fewer expected pulses (rows: BL sum p_i, columns: BL sum q_j) in full, collect the set S
of slots where any of its units is ON, and draw the other side only on S: slots outside S can never
produce a coincidence, and on S the other side's slots are still independent Bernoulli draws, so
the distribution of the pulses applied to the cells is unchanged while a 128x10 output layer, say,
draws ~|S|/BL of its 128 row trains. Consequently the trains of the other side are not known
outside S; the tiles report the EXPECTED numbers of row and column pulses.

Random numbers come from :mod:`ctfrpu.kernels.rng` (xoshiro256+), one stream per sample seeded
from the tile's base seed (drawn from its ``np.random.Generator``) and the sample counter -- so
every draw derives from the run's seed and the same seed gives the same pulses.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .nrt import NO_NRT
from .rng import exponential_local, next_local

# status codes returned by the kernels
ST_OK = 0
ST_BAD_X = 1          # non-finite value in x
ST_BAD_D = 2          # non-finite value in d
ST_PROB = 3           # a probability above 1 without update management
ST_CAPACITY = 4       # an event buffer is too small (the tile grows it and redoes the sample)

DENSE_P = 0.25
"""Above this per-slot probability a train is drawn slot by slot (one ~1.5 ns draw per slot) rather
than by geometric skipping (one exponential draw, ~3-5 ns, per pulse)."""


@numba.njit(cache=True, **NO_NRT)
def sample_max(x, d):
    """(status, max|x|, max|d|) of one sample: ST_BAD_X / ST_BAD_D at the first non-finite value."""
    xmax = 0.0
    for i in range(x.size):
        v = x[i]
        if not np.isfinite(v):
            return ST_BAD_X, 0.0, 0.0
        a = abs(v)
        if a > xmax:
            xmax = a
    dmax = 0.0
    for j in range(d.size):
        v = d[j]
        if not np.isfinite(v):
            return ST_BAD_D, 0.0, 0.0
        a = abs(v)
        if a > dmax:
            dmax = a
    return ST_OK, xmax, dmax


@numba.njit(cache=True, **NO_NRT)
def check_max(xmax, dmax, lrg, dw_min, n, um, blm):
    """(status, pmax, qmax) of a finite sample with these maxima: ST_PROB if a probability exceeds 1
    without update management; pmax/qmax the unclipped largest row/column probabilities (0 when
    nothing is to be done)."""
    if xmax == 0.0 or dmax == 0.0 or lrg == 0.0:
        return ST_OK, 0.0, 0.0
    bl, a_gain, b_gain = train_gains(xmax, dmax, lrg, dw_min, n, um, blm)
    pmax = a_gain * xmax
    qmax = b_gain * dmax
    if (not um) and (pmax > 1.0 or qmax > 1.0):
        return ST_PROB, pmax, qmax
    return ST_OK, pmax, qmax


@numba.njit(cache=True, **NO_NRT)
def check_sample(x, d, lrg, dw_min, n, um, blm):
    """(status, pmax, qmax) of one sample without touching any buffer (:func:`sample_max`, then
    :func:`check_max`)."""
    st, xmax, dmax = sample_max(x, d)
    if st != ST_OK:
        return st, 0.0, 0.0
    return check_max(xmax, dmax, lrg, dw_min, n, um, blm)


@numba.njit(cache=True, **NO_NRT)
def check_batch(X, D, lrg, dw_min, n, um, blm):
    """check_sample over a batch before anything is applied: (status, first bad sample or -1)."""
    for b in range(X.shape[0]):
        st, _, _ = check_sample(X[b], D[b], lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    return ST_OK, -1


@numba.njit(cache=True, **NO_NRT)
def train_length(xmax, dmax, lrg, dw_min, n, blm):
    """BL: N, or with BL management aihwkit's ceil(lr gain max|x| max|d| / dw_min) capped at N."""
    if not blm:
        return n
    need = lrg * xmax * dmax / dw_min
    if not need < n:          # also catches inf
        return n
    bl = int(math.ceil(need))
    return max(1, min(n, bl))


@numba.njit(cache=True, **NO_NRT)
def train_gains(xmax, dmax, lrg, dw_min, n, um, blm):
    """(BL, A, B) for a sample with max|x| = xmax > 0, max|d| = dmax > 0: A*B = lrg / (BL dw_min);
    with update management A = sqrt(AB) gamma, B = sqrt(AB) / gamma, gamma = sqrt(dmax / xmax)
    (aihwkit), else A = B = sqrt(AB)."""
    bl = train_length(xmax, dmax, lrg, dw_min, n, blm)
    ab = lrg / (bl * dw_min)
    if um:
        gamma = math.sqrt(dmax / xmax)
        if not (1e-150 <= gamma <= 1e150):
            # dmax / xmax under- or overflowed (e.g. 5e-324 / 1e300): B = sqrt(AB) / 0 raised
            # ZeroDivisionError. Clamping gamma changes only the A/B split, never A*B (the mean).
            gamma = min(max(math.sqrt(dmax) / math.sqrt(xmax), 1e-150), 1e150)
        return bl, math.sqrt(ab) * gamma, math.sqrt(ab) / gamma
    return bl, math.sqrt(ab), math.sqrt(ab)


@numba.njit(cache=True, **NO_NRT)
def prepare(x, d, lrg, dw_min, n, um, blm, p, q, sx, sd):
    """Fill p, q (probabilities), sx = sign(x), sd = -sign(d); return (BL, any_work, clipped).

    Assumes :func:`check_sample` passed (:func:`prepare_max` with the maxima it found).
    """
    xmax = 0.0
    for i in range(x.size):
        a = abs(x[i])
        if a > xmax:
            xmax = a
    dmax = 0.0
    for j in range(d.size):
        a = abs(d[j])
        if a > dmax:
            dmax = a
    return prepare_max(x, d, xmax, dmax, lrg, dw_min, n, um, blm, p, q, sx, sd)


@numba.njit(cache=True, **NO_NRT)
def prepare_max(x, d, xmax, dmax, lrg, dw_min, n, um, blm, p, q, sx, sd):
    """:func:`prepare` of a sample whose maxima max|x|, max|d| are known.

    The cell sign is sx[i] * sd[j] = -sign(x_i d_j): the weight moves down the gradient. A*B =
    lrg / (BL dw_min); with update management A = sqrt(AB) gamma, B = sqrt(AB) / gamma,
    gamma = sqrt(max|d| / max|x|) (aihwkit), else A = B = sqrt(AB). Probabilities are min(1, .) --
    clipping can only happen with update management (otherwise check_sample refuses), and is
    reported.
    """
    if xmax == 0.0 or dmax == 0.0 or lrg == 0.0:
        return n, False, False
    bl, a_gain, b_gain = train_gains(xmax, dmax, lrg, dw_min, n, um, blm)
    clipped = False
    for i in range(x.size):
        v = x[i]
        pp = a_gain * abs(v) if v != 0.0 else 0.0       # (never inf * 0 = NaN)
        if pp > 1.0:
            pp = 1.0
            clipped = True
        p[i] = pp
        sx[i] = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
    for j in range(d.size):
        v = d[j]
        qq = b_gain * abs(v) if v != 0.0 else 0.0
        if qq > 1.0:
            qq = 1.0
            clipped = True
        q[j] = qq
        sd[j] = -1.0 if v > 0 else (1.0 if v < 0 else 0.0)
    return bl, True, clipped


@numba.njit(cache=True, error_model="numpy", **NO_NRT)
def draw_events(prob, m, smap, rs, act_unit, act_pos, act_ninv, ev_unit, ev_slot):
    """Draw every unit's ON slots among the m slots smap[0] < ... < smap[m-1] (independent
    Bernoulli(prob[u]) per slot; smap = 0..bl-1 for a full train) as events (ev_unit, ev_slot).

    Returns the number of events, or -1 if the event buffers are too small. Order: the dense units
    (p > DENSE_P, drawn slot by slot, branch-free) first, then the sparse ones by geometric
    skipping in lock step -- round r draws the r-th pulse of every unit still inside the train, a
    branch-free sweep over a compacted list of live units (a per-unit loop of random length
    mispredicts its exit once per unit). Each unit's events are in increasing slot order.
    act_*: scratch of size >= prob.size (act_unit int32, act_pos uint64, act_ninv float64).
    """
    s0 = rs[0]
    s1 = rs[1]
    s2 = rs[2]
    s3 = rs[3]
    # the counters are unsigned: array accesses at them need no negative-index wraparound (-13 %)
    one = np.uint64(1)
    zero = np.uint64(0)
    cap = np.uint64(ev_unit.size)
    fm = float(m)
    mu = np.uint64(m)
    last = mu - one                  # (used only when m > 0)
    before = zero - one
    k = zero
    na = zero
    status = 0
    if m > 0:
        for u in range(prob.size):
            pp = prob[u]
            if pp > DENSE_P:
                if k + np.uint64(m) > cap:          # (conservative: room for every slot)
                    status = -1
                    break
                # ON if the top 53 bits of a draw are below pp * 2^53 (= uniform < pp); pp = 1: always
                thr = np.uint64(min(pp, 1.0) * 9007199254740992.0)
                for s in range(m):
                    r, s0, s1, s2, s3 = next_local(s0, s1, s2, s3)
                    ev_unit[k] = u
                    ev_slot[k] = smap[s]
                    k += one if ((r >> np.uint64(11)) < thr or pp >= 1.0) else zero
            else:
                # compact list of sparse live units (branch-free append)
                act_unit[na] = u
                act_pos[na] = before     # "slot -1": the first skip wraps it to the skip itself
                # skip ~ Geometric(pp) (OFF slots before the next ON one) = floor(E / -log(1 - pp)),
                # E ~ Exp(1); log(1 - pp) is as accurate as log1p(-pp) to ~1e-16 / pp relative, and
                # ~4x cheaper. pp = 0 gives ninv = inf: the unit leaves in the first round.
                act_ninv[na] = -1.0 / (math.log(1.0 - pp) if pp > 1e-6 else math.log1p(-pp)) if pp > 0.0 else np.inf
                na += one if pp > 0.0 else zero
    while na > zero and status == 0:
        if k + na > cap:
            status = -1
            break
        nb = zero
        for a in range(na):
            ex, s0, s1, s2, s3 = exponential_local(s0, s1, s2, s3)
            # The skip is clamped to the train length BEFORE the integer conversion: ex / p
            # overflows an integer for p below ~1e-18 (a wrapped position kept the unit live
            # forever: a hang, or an out-of-bounds smap read). NaN (ex = 0, ninv = inf) also lands
            # on fm. Any skip >= fm leaves the train, so this is exact.
            g = ex * act_ninv[a]
            g = g if g < fm else fm
            # floor(g) for g in [0, m] is the integer conversion; positions stay integers (unsigned,
            # modulo 2^64 for the start at "slot -1"): no float round trip on the chain to smap
            pos = act_pos[a] + one + np.uint64(g)
            live = pos < mu
            u = act_unit[a]
            ev_unit[k] = u
            ev_slot[k] = smap[min(pos, last)]
            k += one if live else zero
            act_unit[nb] = u
            act_pos[nb] = pos
            act_ninv[nb] = act_ninv[a]
            nb += one if live else zero
        na = nb
    rs[0] = s0
    rs[1] = s1
    rs[2] = s2
    rs[3] = s3
    return -1 if status < 0 else np.int64(k)


@numba.njit(cache=True, **NO_NRT)
def active_slots(nev, ev_slot, bl, mark, smap):
    """Sorted distinct slots among ev_slot[:nev] into smap; returns their number. mark: int[bl] scratch."""
    for k in range(bl):
        mark[k] = 0
    for t in range(nev):
        mark[ev_slot[t]] = 1
    m = 0
    for k in range(bl):
        smap[m] = k
        m += mark[k]
    return m


@numba.njit(cache=True, **NO_NRT)
def csr_by_key(n, keys, values, n_keys, ptr, cursor, out):
    """Stable counting sort of n (key, value) pairs into CSR: the values with key k, in input
    order, are out[ptr[k]:ptr[k+1]]. O(n + n_keys)."""
    for k in range(n_keys + 1):
        ptr[k] = 0
    for t in range(n):
        ptr[keys[t] + 1] += 1
    for k in range(n_keys):
        ptr[k + 1] += ptr[k]
    for k in range(n_keys):
        cursor[k] = ptr[k]
    for t in range(n):
        k = keys[t]
        out[cursor[k]] = values[t]
        cursor[k] += 1


@numba.njit(cache=True, **NO_NRT)
def events_by_slot(nev, ev_unit, ev_slot, bl, slot_ptr, cursor, slot_units):
    """Events into CSR by slot: the units ON at slot k are slot_units[slot_ptr[k]:slot_ptr[k+1]]."""
    csr_by_key(nev, ev_slot, ev_unit, bl, slot_ptr, cursor, slot_units)


@numba.njit(cache=True, **NO_NRT)
def events_by_unit(nev, ev_unit, ev_slot, n_units, ptr, cursor, unit_slots):
    """Events into CSR by unit: unit u's slots, ascending, are unit_slots[ptr[u]:ptr[u+1]]."""
    csr_by_key(nev, ev_unit, ev_slot, n_units, ptr, cursor, unit_slots)


@numba.njit(cache=True, **NO_NRT)
def count_coincidences(col_ptr, col_slots, n_cols, slot_ptr):
    """Number of coincidences (pulses applied to cells) of the drawn trains."""
    total = 0
    for j in range(n_cols):
        for t in range(col_ptr[j], col_ptr[j + 1]):
            k = col_slots[t]
            total += slot_ptr[k + 1] - slot_ptr[k]
    return total
