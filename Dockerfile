# log-save-server: uvicorn (uvloop + httptools) serving the FastAPI app. PostgreSQL comes from
# DATABASE_URL or DATABASE_HOST/...; see docker-compose.yml.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# Dependencies first, in their own layer: code changes do not reinstall them.
COPY requirements.txt requirements-lambda.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY app ./app

# A numeric non-root user: Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001

# uvicorn reads WEB_CONCURRENCY itself as its worker count; 2 fits a 2-vCPU host.
ENV WEB_CONCURRENCY=2 \
    LOGSAVE_DATA_DIR=/tmp/logsave
EXPOSE 8000

# No curl in a slim image: ask the readiness endpoint with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4).status != 200)"]

# Exec form: uvicorn is PID 1 and gets SIGTERM itself, then drains for up to 25 s (keep the
# orchestrator's stop timeout above that, e.g. stop_grace_period: 30s).
CMD ["uvicorn", "app.__main__:serve", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--loop", "uvloop", "--http", "httptools", "--no-access-log", \
     "--proxy-headers", "--forwarded-allow-ips", "*", \
     "--timeout-keep-alive", "75", "--timeout-graceful-shutdown", "25"]
