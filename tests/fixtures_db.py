"""PostgreSQL fixtures (owned by the store work)."""
