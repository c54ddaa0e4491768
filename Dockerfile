# cvrank in a container: the same lock files installed by the same script as the runtime root filesystem.
#   docker build -t cvrank . && docker run --rm -v "$PWD/workspace:/cvrank/workspace" cvrank run
FROM debian:trixie-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY runtime/install-envs.sh runtime/requirements-*.lock /opt/cvrank/recipe/
RUN /opt/cvrank/recipe/install-envs.sh && rm -rf /root/.cache
COPY . /cvrank
WORKDIR /cvrank
ENV PATH=/opt/cvrank/tfx/bin:/opt/cvrank/airflow/bin:$PATH \
    PYTHONPATH=/cvrank \
    CVRANK_IN_RUNTIME=1 \
    CVRANK_TFX_PYTHON=/opt/cvrank/tfx/bin/python
ENTRYPOINT ["python", "-m", "cvrank.cli"]
CMD ["--help"]
