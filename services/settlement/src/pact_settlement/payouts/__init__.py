"""Seller payouts: a seller's available balance paid out through a rail."""
