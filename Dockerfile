# syntax=docker/dockerfile:1
# clipsieve, CPU image. Build: docker build -t clipsieve:0.1.0 .
# Runs the TypeScript sources directly (Node.js 24 strips types natively): no build step, and the
# image runs exactly the code the tests run. Production dependencies only; runs as a non-root user.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# The CPU image needs no CUDA provider; onnxruntime-node's installer would otherwise download it.
ENV ONNXRUNTIME_NODE_INSTALL=skip
# The librdkafka client (the default Kafka adapter) is a native module: its postinstall fetches the
# prebuilt binary where it can, else builds it from the librdkafka source in its package against the
# system's OpenSSL and zlib. The tool chain and headers stay in this stage; npm_config_nodedir points
# node-gyp at the image's own Node.js headers.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ libssl-dev zlib1g-dev \
  && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
COPY scripts/build-librdkafka.ts ./scripts/build-librdkafka.ts
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# libssl3 for the librdkafka client (linked against the system's OpenSSL when built from source).
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && groupadd --gid 10001 clipsieve \
  && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin clipsieve
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY schemas ./schemas
COPY deploy/docker/healthcheck.mjs ./deploy/docker/healthcheck.mjs
USER 10001:10001
EXPOSE 9464
# /healthz on the config's metricsPort; the start period covers joining the consumer group.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["node", "/app/deploy/docker/healthcheck.mjs", "/etc/clipsieve/config.json"]
# clipsieve drains the window in flight on SIGTERM (at most 30 s): give it a stop timeout above that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/clipsieve.js"]
CMD ["run", "--config", "/etc/clipsieve/config.json"]
