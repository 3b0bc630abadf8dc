"""The SQLite implementations of the store protocols: one module per store, with its SQL."""
