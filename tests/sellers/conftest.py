"""The seller tests: the example weather API sold through real provider and settlement
processes (helpers: sellers_processes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# Test modules share helpers through a uniquely named module (--import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
