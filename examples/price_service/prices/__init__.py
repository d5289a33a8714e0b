"""The prices app: a price endpoint backed by the exchange and a volume endpoint backed by SQLite."""
