"""Security tier: each attack a hostile user tried, replayed against the real services."""
