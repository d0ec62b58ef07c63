# Multi-stage build: dependencies from the lock file, then a slim non-root runtime.
# Runs against a real server: docker run -e DATABASE_URL=postgresql://... -e CRM_JWT_SECRET=...
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv>=0.5"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY alembic ./alembic
COPY alembic.ini ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home crm
WORKDIR /srv
COPY --from=build --chown=crm:crm /src /srv
USER crm
ENV PATH="/srv/.venv/bin:$PATH" PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["crm", "serve", "--host", "0.0.0.0", "--port", "8000", "--migrate", "--workers", "2"]
