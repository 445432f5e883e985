# syntax=docker/dockerfile:1
# A Patroni member: Debian 12's PostgreSQL 15 with pg_cron, Patroni 4 from PyPI in a venv of the
# system Python that the postgres user runs. Used by compose.ha.yaml (docs/deploy.md §6).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      postgresql-15 postgresql-15-cron python3 python3-venv ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/patroni \
 && /opt/patroni/bin/pip install --no-cache-dir 'patroni[etcd3,psycopg3]>=4.0,<5' \
 && mkdir -p /var/lib/postgresql/patroni /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY --chown=postgres:postgres deploy/patroni.yml /etc/patroni.yml
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["curl", "-fsS", "http://127.0.0.1:8008/health"]
CMD ["/opt/patroni/bin/patroni", "/etc/patroni.yml"]
