# Build stage: production dependencies only. The project-local `node` devDependency (which gives npm
# scripts Node 24 on machines that lack it) is not needed here: the image already is Node 24.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY src ./src

# Run stage: minimal Node 24, non-root, read-only friendly (nothing is written to the filesystem; the
# certificate comes from a mounted Secret or from the self-managed Secret in memory).
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/src ./src
COPY package.json ./
USER 1000:1000
EXPOSE 8443
# Node 24 runs the TypeScript sources directly (type stripping): no compile step, and this is exactly
# the command the production-install test runs outside Docker.
ENTRYPOINT ["node", "src/main.ts"]
