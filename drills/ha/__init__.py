"""HA drills: failovers, switchover, synchronous standby loss and rolling app restarts against
the topology of `scripts/ha/ha.sh` (docs/deploy.md)."""
