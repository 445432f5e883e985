"""HTTP routes grouped by domain: admin, runtime nodes, operations."""
