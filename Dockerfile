# syntax=docker/dockerfile:1
# The API image. It also carries the migrations: `python -m control_plane.migrate` (compose runs
# it as a one-shot service before the app). The database needs pg_cron preloaded (see compose.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (cached until pyproject.toml changes).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Only what the service needs at run time (no .venv/.local from a developer checkout).
COPY app.py ./
COPY routes/ ./routes/
COPY control_plane/ ./control_plane/
COPY sql/ ./sql/
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin control-plane \
 && mkdir -p /var/lib/control-plane \
 && chown control-plane:control-plane /var/lib/control-plane

# Run from /app so the modules (and sql/ next to them) come from the source tree.
USER control-plane
ENV HOST=0.0.0.0 \
    PORT=8000 \
    CONTROL_PLANE_STATE_DIR=/var/lib/control-plane
EXPOSE 8000
VOLUME ["/var/lib/control-plane"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "control_plane.serve"]
