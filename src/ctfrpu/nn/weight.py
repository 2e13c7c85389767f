"""``layer.weight``: a tensor whose in-place writes program the tile.

``AnalogLinear.weight`` / ``AnalogConv2d.weight`` return a float32 copy of the tile's weights (it is
not a parameter and never has a gradient: the tile applies its own pulsed update). Writing into
that copy -- ``w.copy_(...)``, ``w.zero_()``, ``w[0] = ...``, ``w.data = ...``, any
``torch.nn.init`` function, a write through a view such as ``w[0].fill_(1)`` or ``w.t()`` --
programs the tile with the tensor's new content after each in-place operation, with
``set_weights`` semantics: clipped to each cell's window (CTF: V_T set, cell left relaxed).
The tensor itself keeps what was written; read ``layer.weight`` again to see the programmed
(clipped) values. ``layer.weight = t`` programs ``t`` the same way.

How (ours): a ``torch.Tensor`` subclass whose ``__torch_function__`` runs every operation plainly,
then, if the operation wrote in place into this tensor or a view of it, programs the tile from
the root tensor. Results sharing the root's storage (views, ``.data``, ``.detach()``) stay
linked; everything else (``w * 2``, ``w.clone()``) is a plain tensor.
"""

from __future__ import annotations

import torch

# in-place operators that do not follow torch's trailing-underscore convention
_INPLACE_DUNDER = frozenset({"__setitem__", "__set__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                             "__ifloordiv__", "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__",
                             "__ilshift__", "__irshift__", "__imatmul__"})


def _writes_in_place(name: str) -> bool:
    return name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("_"))


class AnalogWeight(torch.Tensor):
    """A copy of a layer's analog weights; in-place writes program the layer's tile (see module doc)."""

    @staticmethod
    def __new__(cls, data: torch.Tensor, layer):
        t = torch.Tensor._make_subclass(cls, data, False)
        t._layer = layer
        t._root = t
        return t

    def _program(self) -> None:
        root = self._root
        with torch._C.DisableTorchFunctionSubclass():
            value = torch.Tensor.detach(root).clone()
        root._layer.set_weights(value)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        target = args[0] if args else kwargs.get("tensor", kwargs.get("input", kwargs.get("self")))
        name = getattr(func, "__name__", "")
        if isinstance(target, AnalogWeight) and _writes_in_place(name):
            target._program()
        dest = kwargs.get("out")
        if isinstance(dest, AnalogWeight):
            dest._program()
        root = next((a._root for a in (*args, *kwargs.values()) if isinstance(a, AnalogWeight)), None)
        return _link(out, root) if root is not None else out


def _link(out, root: AnalogWeight):
    """Results that alias the root's storage stay AnalogWeights linked to the root."""
    if isinstance(out, (tuple, list)):
        return type(out)(_link(o, root) for o in out)
    if not isinstance(out, torch.Tensor) or isinstance(out, AnalogWeight) and out._root is root:
        return out
    with torch._C.DisableTorchFunctionSubclass():
        shares = out.untyped_storage().data_ptr() == root.untyped_storage().data_ptr() and out.numel() > 0
        if not shares:
            return out if type(out) is torch.Tensor else out.as_subclass(torch.Tensor)
        view = out.as_subclass(AnalogWeight)
    view._layer = root._layer
    view._root = root
    return view
