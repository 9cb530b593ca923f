"""The seller tests: the example weather API sold through real provider and settlement
processes (helpers: tests/fixtures/sellers.py)."""
