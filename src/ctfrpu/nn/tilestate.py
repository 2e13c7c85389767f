"""The tile's state as torch state-dict entries, and copies of a tile (deepcopy, pickling).

Built only on the tile's public API: :meth:`AnalogTile.state_dict` / :meth:`AnalogTile.load_state_dict`
and its constructor arguments (``out_size``, ``in_size``, ``device``, ``train``, ``update_config``,
``io``, ``rng``). The tile's own state dict mixes arrays, scalars and the generator's nested
state; here (ours):

* every array becomes a tensor entry: ``_w`` (the weights) under ``weight``, any other ``_name``
  under ``analog_tile_name`` (device records ``analog_tile_cells``, counters ``analog_tile_stats``, ...);
* every int / float scalar becomes a 0-d tensor under ``analog_tile_name`` (clock, counter,
  base seed, gain);
* everything else (kind, shape, N, the generator state) goes into the layer's extra state, a dict
  of plain Python values, so that ``torch.load(..., weights_only=True)`` reads it back and no
  pickled code is ever needed. The extra state also records which entries were scalars and of
  which type, so loading rebuilds exactly the tile's dict.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..tile import AnalogTile

FORMAT = 1
"""Version of the layout below (stored in the extra state)."""

_INT64_MAX = 2**63 - 1


def _entry_name(name: str) -> str:
    return "weight" if name == "_w" else "analog_tile_" + name.lstrip("_")


def split_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A tile's ``state_dict()`` -> (tensor entries, extra state of plain values)."""
    tensors: dict[str, torch.Tensor] = {}
    extra: dict = {"format": FORMAT, "arrays": {}, "scalars": {}, "values": {}}
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            key = _entry_name(name)
            tensors[key] = torch.from_numpy(np.array(value, copy=True))
            extra["arrays"][key] = name
        elif isinstance(value, (float, np.floating)) and not isinstance(value, bool):
            key = _entry_name(name)
            tensors[key] = torch.tensor(float(value), dtype=torch.float64)
            extra["scalars"][key] = [name, "float"]
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) <= _INT64_MAX:
            key = _entry_name(name)
            tensors[key] = torch.tensor(int(value), dtype=torch.int64)
            extra["scalars"][key] = [name, "int"]
        else:
            extra["values"][name] = list(value) if isinstance(value, tuple) else value
    return tensors, extra


def expected_keys(tile: AnalogTile) -> list[str]:
    """The tensor entries :func:`split_state` gives for ``tile``."""
    return list(split_state(tile.state_dict())[0])


def join_state(tensors: dict[str, torch.Tensor], extra: dict, like: AnalogTile) -> dict:
    """Inverse of :func:`split_state`, checked against the layout of ``like`` (same keys, shapes
    and dtypes); raises ValueError with the first mismatch."""
    if not isinstance(extra, dict) or extra.get("format") != FORMAT:
        raise ValueError(f"analog extra state of an unknown format: {type(extra).__name__} "
                         f"{extra.get('format') if isinstance(extra, dict) else ''}")
    ref_tensors, ref_extra = split_state(like.state_dict())
    kind = extra.get("values", {}).get("kind")
    if kind != like.kind:
        raise ValueError(f"state of a {kind} tile, this layer's tile is {like.kind}")
    state: dict = {}
    for key, ref in ref_tensors.items():
        t = tensors[key]
        if key in ref_extra["arrays"]:
            if tuple(t.shape) != tuple(ref.shape):
                raise ValueError(f"{key}: shape {tuple(t.shape)}, this layer has {tuple(ref.shape)}")
            state[ref_extra["arrays"][key]] = t.detach().cpu().numpy().astype(ref.numpy().dtype, copy=True)
        else:
            if t.numel() != 1:
                raise ValueError(f"{key}: expected a scalar, got shape {tuple(t.shape)}")
            name, kind = ref_extra["scalars"][key]
            state[name] = float(t.item()) if kind == "float" else int(t.item())
    state.update(extra.get("values", {}))
    return state


def tile_args(tile: AnalogTile) -> dict:
    """The constructor arguments of ``tile`` except ``w0`` and ``gain`` (restored by its state)."""
    return {"out_size": tile.out_size, "in_size": tile.in_size, "device": tile.device, "train": tile.train,
            "update": tile.update_config, "io": tile.io, "rng": tile.rng}


def rebuild_tile(args: dict, state: dict) -> AnalogTile:
    """A tile built from ``args`` (:func:`tile_args`) and put into ``state`` (its state dict):
    it continues bit-identically. The constructor's draws from ``args['rng']`` are undone by the
    generator state in ``state``."""
    tile = AnalogTile(args["out_size"], args["in_size"], args["device"], args["train"], args["update"], args["io"],
                      args["rng"], gain=state["gain"])
    tile.load_state_dict(state)
    return tile


def deepcopy_tile(tile: AnalogTile, memo: dict) -> AnalogTile:
    """An independent copy of ``tile`` (its arrays are views on its records, which the generic
    deepcopy would split apart)."""
    state = tile.state_dict()                 # copies, taken before the generator is copied
    return rebuild_tile(copy.deepcopy(tile_args(tile), memo), state)
