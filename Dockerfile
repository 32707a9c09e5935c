# log-save-server: `python -m app` (uvicorn, uvloop + httptools with a header timeout) serving the FastAPI app. PostgreSQL comes from
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

# Workers: one per CPU the container may use (its --cpus quota included) unless WEB_CONCURRENCY is set.
# Keep-alive above a load balancer's idle timeout (ALB: 60 s); uvicorn reads FORWARDED_ALLOW_IPS itself:
# trust X-Forwarded-* from the proxy in front of the container.
ENV SERVER_KEEPALIVE_TIMEOUT=75 \
    SHUTDOWN_TIMEOUT=25 \
    FORWARDED_ALLOW_IPS="*" \
    LOGSAVE_DATA_DIR=/tmp/logsave
EXPOSE 8000

# No curl in a slim image: ask the readiness endpoint with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4).status != 200)"]

# Exec form: the app is PID 1 and gets SIGTERM itself, then drains for up to SHUTDOWN_TIMEOUT s (keep the
# orchestrator's stop timeout above that, e.g. stop_grace_period: 30s). `python -m app` rather than the
# uvicorn command: it applies every setting (header timeout, MAX_CONNECTIONS) and gives the workers a
# fresh directory to add their metrics up in.
CMD ["python", "-m", "app"]
