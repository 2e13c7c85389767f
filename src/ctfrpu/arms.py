"""The ablation's vocabulary (OUR design, docs/science.md §4.9): the arms, their labels, and which
arm a stored run config belongs to. A leaf module so that the ablation (which builds the arms) and
the report (which reads them back from the store) share one definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATS_SWEEP = "update-stats"
"""Sweep label of the update-statistics records in the store."""


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    short: str
    bias: str
    noise: str


ARMS: dict[str, Arm] = {a.key: a for a in (
    Arm("fp", "FP SGD", "FP\nSGD", "none", "none"),
    Arm("ideal", "ideal device, stochastic pulses", "ideal\npulses", "none", "counting"),
    Arm("ctf_expected", "CTF expected update", "CTF\nexpected", "CTF bias", "none"),
    Arm("ctf", "CTF full model", "CTF\nfull", "CTF bias", "CTF noise"),
    Arm("ctf_comp", "CTF full model + compensation", "CTF full\n+ comp.", "residual", "CTF noise"),
    Arm("ideal_gauss", "ideal + Gaussian noise matched to CTF", "ideal +\nGauss noise", "none", "matched to CTF"),
)}
ARM_ORDER = tuple(ARMS)


def classify(config: dict[str, Any]) -> str | None:
    """The ablation arm a run config belongs to (None for other combinations)."""
    dev = config.get("device", {}).get("kind", "fp")
    mode = config.get("update", {}).get("mode", "exact")
    comp = config.get("compensation", {}).get("kind", "none")
    if dev == "fp":
        return "fp"
    if dev == "ideal":
        return {"exact": "ideal", "gaussian": "ideal_gauss"}.get(mode) if comp == "none" else None
    if dev == "ctf":
        if mode == "exact":
            return "ctf_comp" if comp == "gain" else "ctf"
        if mode == "expected" and comp == "none":
            return "ctf_expected"
    return None
