"""The numba option of the update kernels: no reference counting.

A numba function that takes arrays, or tuples of them, adjusts each one's reference count on entry
and on exit with an atomic instruction (a ``lock`` prefix, which also waits for the core's pending
stores). In the exact update that was ~380 such instructions per layer and sample (~1,150 per
sample of the 784-256-128-10 network), which ``perf`` put at 5 % of a training run. The update
kernels never allocate (the tile owns every buffer, :mod:`.bundle`) and never hand an array back
to their caller, so they need no reference counts; ``_nrt=False`` is numba's own switch for that.

Rules for a function compiled with it: no allocation (``np.empty``, ``.copy()``, array
expressions), and no array (or tuple holding one) returned -- an array handed from such a function
to one compiled with reference counting would be released once too often. Helpers that return
arrays are ``inline="always"`` (inlined into the caller, they take its rules).
"""

NO_NRT = {"_nrt": False}
