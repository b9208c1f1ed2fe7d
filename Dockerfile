FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md wsgi.py gunicorn.conf.py ./
COPY authsvc ./authsvc
# The tracing extra: OpenTelemetry stays off until OTEL_* variables are set.
RUN pip install --no-cache-dir '.[tracing]' && useradd --system --uid 10001 authsvc \
    && mkdir -m 0700 /app/instance && chown authsvc /app/instance
USER authsvc
ENV AUTHSVC_BIND=0.0.0.0:8000 AUTHSVC_WORKERS=2
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["authsvc", "serve"]
