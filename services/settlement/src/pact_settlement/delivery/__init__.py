"""hash_reveal delivery: the seller's COMMIT and REVEAL, and the buyer's challenges."""
