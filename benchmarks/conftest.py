"""Benchmarks run apart from the test suite: ``pytest benchmarks --benchmark-only``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
