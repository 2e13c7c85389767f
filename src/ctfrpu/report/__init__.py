"""The HTML report built from the run store (figures, tables, verdicts on the paper's findings).

Everything beyond the papers' abstracts -- the CTF model, the compensation, the ablation arms and
the verdict thresholds -- is OUR reconstruction and is labelled as such in the report.
"""

from .build import build_report

__all__ = ["build_report"]
