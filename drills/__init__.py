"""Reliability drills: database restarts under load, the app tier going away, fuzzing, a soak
and races, each against the real server process and the real PostgreSQL cluster.

`bash drills/run.sh` (what `make drills` calls) prepares a database and runs them all;
`python -m drills [name ...]` runs some of them against DATABASE_URL. Each drill prints one line
`drill <name>: pass|fail <figures>`; details of a failure go to stderr. See docs/reliability.md.
"""
