# otelpipe container image. Not exercised by the test suite: Docker does not run on
# the machines the tests run on. Build: docker build -t otelpipe .
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 otelpipe
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER otelpipe
WORKDIR /home/otelpipe
# OTLP gRPC, OTLP HTTP, JSON logs, health/metrics
EXPOSE 4317 4318 8081 13133
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:13133/health/liveness', timeout=2).status == 200 else 1)"
ENTRYPOINT ["otelpipe", "run"]
# With no -c, otelpipe runs its embedded default config; mount yours and pass -c.
CMD []
