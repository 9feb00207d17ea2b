"""GPU inventory and per-device leases (plain Python; the Dagster layer wires them into steps)."""
