"""Low-precision and compiled gradients against a float64 reference: the gate (gate.py), one
side run in one dtype (runs.py), and check_against_reference / check_compiled (check.py)."""

from gradcheck.reference.check import check_against_reference, check_compiled

__all__ = ["check_against_reference", "check_compiled"]
