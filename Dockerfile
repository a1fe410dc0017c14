# One image for every Maillage service; the command picks the service:
#   python -m services.feed | services.contacts | services.matcher
#   python -m services.dispatch email|mastodon|bluesky|x
#   python -m tools.migrate feed|contacts        (the init container)
# Runs as a non-root user on a read-only root filesystem (only /tmp is
# written: mount an emptyDir there), as deploy/k8s does.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# The dependencies first, from pyproject.toml alone: a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
COPY shared ./shared
COPY services ./services
COPY tools ./tools
# Bytecode now: a read-only filesystem cannot take it at run time.
RUN python -m compileall -q shared services tools

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MAILLAGE_ENVIRONMENT=production
RUN groupadd --system --gid 10001 maillage \
    && useradd --system --uid 10001 --gid maillage --home-dir /tmp --no-create-home --shell /usr/sbin/nologin maillage
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8010 8020 8030 8040 8041 8042 8043
CMD ["python", "-m", "services.feed"]
