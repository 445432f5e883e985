"""Runtime-node control plane: the Python side (configuration, database, HTTP plumbing)."""
