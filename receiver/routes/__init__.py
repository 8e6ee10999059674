"""HTTP routes, one module per area of the public contract (DESIGN §5)."""
