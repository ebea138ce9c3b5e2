# Build stage: bundle src/main.ts and its runtime dependencies into one file (src/build.ts says why).
# Dev dependencies are installed for the bundler; install scripts are not run: esbuild works without its
# postinstall, and the project-local `node` package (which gives npm scripts Node 24 on machines that
# lack it) is not needed in an image that already is Node 24.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN node src/build.ts dist/main.mjs

# Run stage: minimal Node 24, non-root, read-only friendly (nothing is written to the filesystem; the
# certificate comes from a mounted Secret or from the self-managed Secret in memory). No node_modules:
# the bundle is the whole program, with the licences of what it contains beside it.
FROM node:24-bookworm-slim
# What registries, scanners and `podman image inspect` show. The version is package.json's (a unit test
# checks that they agree); the source is the repository the image is built from: give it with
# --build-arg SOURCE_URL=<repository URL> (test/image/build-image.sh passes the git remote "origin").
ARG SOURCE_URL
LABEL org.opencontainers.image.title="config-checksum-webhook"
LABEL org.opencontainers.image.description="Mutating admission webhook and watcher that roll Deployments, StatefulSets and DaemonSets exactly once when the ConfigMaps they consume change."
LABEL org.opencontainers.image.version="0.1.0"
LABEL org.opencontainers.image.licenses="Apache-2.0"
LABEL org.opencontainers.image.source="${SOURCE_URL}"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/dist/ ./
USER 1000:1000
EXPOSE 8443
# --max-semi-space-size=2: V8's young generation may otherwise grow to 3 x 16 MiB of mostly garbage
# between collections of list and watch traffic; 2 MiB semi-spaces keep resident memory near live data.
# --max-old-space-size-percentage=50: the heap may take half of the container's memory limit (Node reads
# the cgroup), leaving the rest to code, buffers and TLS. Without it Node lets the heap grow to the whole
# limit (259 MiB under the shipped 256Mi), so garbage is collected late and the kernel, not V8, ends a
# leak. Raising the Deployment's limit for a larger cluster raises the heap with it. Figures: scenario 5
# of test/bench/RESULTS.md. This is exactly the command the e2e tests and benchmarks run outside Docker.
ENTRYPOINT ["node", "--max-semi-space-size=2", "--max-old-space-size-percentage=50", "main.mjs"]
