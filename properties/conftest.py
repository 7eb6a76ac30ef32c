"""Hypothesis profiles for the property suite: ``dev`` (default), ``ci`` (default under
``CI=true``, derandomized) and ``thorough``; pick one with ``--hypothesis-profile NAME``."""

from gradcheck.strategies import register_profiles

register_profiles()
