# otelpipe container image. Not exercised by the test suite: Docker does not run on
# the machines the tests run on. Build (the tag deploy/kubernetes/sidecar.yaml and the
# README use; the version is pipeline.__version__):
#   docker build -t otelpipe:0.1.0 .
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
# otelpipe listens on localhost by default (as the Collector does since v0.104); in a
# container the published ports need every interface. These set the embedded default
# config's endpoints (and those of configs/*.yaml); a config of your own that names no
# endpoint still gets localhost: write 0.0.0.0:<port> in it.
ENV OTELPIPE_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    OTELPIPE_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    OTELPIPE_JSONLOGS_ENDPOINT=0.0.0.0:8081 \
    OTELPIPE_HEALTH_ENDPOINT=0.0.0.0:13133 \
    OTELPIPE_PROMETHEUS_ENDPOINT=0.0.0.0:8889
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:13133/health/liveness', timeout=2).status == 200 else 1)"
ENTRYPOINT ["otelpipe", "run"]
# With no -c, otelpipe runs its embedded default config; mount yours and pass -c.
CMD []
