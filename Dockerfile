# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the full dependency set.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=optional
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
RUN npx tsc -p tsconfig.build.json

# Runtime stage: production dependencies only, non-root, compiled output and views.
FROM node:24-bookworm-slim
ENV NODE_ENV=production PORT=3000 DATA_DIR=/data
# As package.json's "start": one malloc arena for all threads. With glibc's default (eight per core)
# each thread that ran an argon2 hash keeps its own freed 19 MiB buffer; one arena keeps one.
ENV MALLOC_ARENA_MAX=1
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev --omit=optional && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY views ./views
COPY config ./config
COPY bin ./bin
# `idp` on PATH: the CLI runs in the container as `docker compose exec idp-1 idp <command>`.
RUN ln -s /app/bin/idp.js /usr/local/bin/idp && mkdir -p /data && chown node:node /data
USER node
EXPOSE 3000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# The flags of package.json's "start" (test/unit/start-command.test.ts keeps them in step):
# --max-semi-space-size=4 keeps the young generation small; --heap-growing-percent=50 lets the old
# generation grow 50% past what survived the last full collection before the next (V8's default lets
# an idle-started server grow to ~4x, so ~35 MB live became ~135 MB of heap under load). It costs
# full collections: 85 instead of 19 in 20 s of token load; README "Operations" has the trade.
# --liftoff-only keeps the embedded store's WebAssembly PostgreSQL on V8's baseline compiler: its
# optimizing tier-up held ~500 MB for a moment at every boot, for no speed measured (bench/README.md).
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=50", "--liftoff-only", "dist/src/main.js"]
