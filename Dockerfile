# Switchboard: one process serving the API, /ws and /socket.io/ on port 8080.
#   docker build -t switchboard .
#   docker run -e SWITCHBOARD_JWT_SECRET=... -e SWITCHBOARD_CUSTOMER_JWT_SECRET=... \
#       -v switchboard-data:/var/lib/switchboard -p 127.0.0.1:8080:8080 switchboard
# compose.yaml runs it with MongoDB (a replica set of one). README: "Running in production".

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/switchboard
# The project only (.dockerignore leaves out tests, .venv, data and caches); every dependency
# comes as a wheel, so the image needs no compiler.
COPY . /src
RUN /opt/switchboard/bin/pip install /src

FROM python:3.11-slim-bookworm
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWITCHBOARD_MODE=production \
    SWITCHBOARD_HOST=0.0.0.0 \
    SWITCHBOARD_PORT=8080 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard \
    SWITCHBOARD_LOG_FORMAT=json
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --no-create-home \
        --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0750 /var/lib/switchboard
COPY --from=build /opt/switchboard /opt/switchboard
USER switchboard:switchboard
WORKDIR /var/lib/switchboard
# The embedded SQLite database (and its lock) live here; with MongoDB it stays empty.
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080
# /healthz: the process answers. (/readyz, which also needs the store and the assignment actor,
# is for a load balancer deciding where to send traffic, not for restarting the container.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SWITCHBOARD_PORT', '8080')}/healthz\", timeout=2)"]
# SIGTERM (docker stop) stops the server cleanly, as Ctrl-C does.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchboard"]
CMD ["serve"]
