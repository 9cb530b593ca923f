"""Streaming settlement: checkpoints of the buyer's vouchers and the one closing payment."""
