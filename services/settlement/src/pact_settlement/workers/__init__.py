"""Background workers started with the app: the deadline sweeper and the reconciler."""
