"""Streaming delivery: signed chunks paid by the buyer's cumulative vouchers."""
