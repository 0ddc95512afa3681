# tlsrelay container image: a static Go binary on distroless, run as a
# non-root user, with the spool on a volume.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tlsrelay .
#   docker run --rm tlsrelay demo -once          # no config needed: proves it works
#
# `serve` needs a config at /etc/tlsrelay/relay.yaml (mount it) whose
# queue.dir is /var/spool/tlsrelay (the volume below, which HEALTHCHECK reads).
# See deploy/ for docker compose, Kubernetes and systemd.
#
# CI has no container engine, so .ci/run cannot build this image. It runs
# the one build command instead: the line after "# ci:build" below, with
# VERSION and OUT set in the environment as Docker sets build ARGs. Keep that
# command on ONE line (no trailing backslash) and free of RUN flags
# (--mount=...), or CI breaks on purpose.

# ---- build -----------------------------------------------------------------
# Debian bookworm, like the machines CI runs on; the toolchain must be at least
# go.mod's go line (1.26.x), or the go command fetches a newer one.
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first: this layer is rebuilt only when go.mod or go.sum change, so
# an edit to the source does not download every module again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

# VERSION goes into `tlsrelay version` (main.version); OUT is where the
# binary goes (CI points it at a temporary directory).
ARG VERSION=dev
ARG OUT=/out
# CGO_ENABLED=0: a static binary with no libc, so it runs on distroless/static
# (no libc there) and does not depend on the build host's glibc. -trimpath
# and -s -w keep build paths and debug tables out of the image.
# ci:build
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o "${OUT}/tlsrelay" .

# The spool directory, created here because the final image has no shell to
# mkdir with; copied below owned by the runtime user. A named volume mounted
# on it starts with this ownership (Docker copies it into an empty volume).
RUN mkdir -p /spool-skel/tlsrelay && chmod 0700 /spool-skel/tlsrelay

# ---- runtime ---------------------------------------------------------------
# distroless/static: CA certificates (/etc/ssl/certs, the system roots for
# providers without tls.ca_file), /etc/passwd with "nonroot" (65532), /tmp,
# and nothing else: no shell, no package manager. Pin a digest
# (static-debian12:nonroot@sha256:...) for reproducible deployments.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
LABEL org.opencontainers.image.title="tlsrelay" \
      org.opencontainers.image.description="Local SMTP relay for legacy apps: plain SMTP in, durable spool, strict per-provider TLS out" \
      org.opencontainers.image.source="https://github.com/tlsrelay/tlsrelay" \
      org.opencontainers.image.version="${VERSION}"

ARG OUT=/out
COPY --from=build ${OUT}/tlsrelay /usr/local/bin/tlsrelay
COPY --from=build --chown=65532:65532 /spool-skel/tlsrelay /var/spool/tlsrelay

# Numeric, not "nonroot": Kubernetes' runAsNonRoot can only verify a numeric
# user, and a numeric USER needs no /etc/passwd lookup.
USER 65532:65532
VOLUME /var/spool/tlsrelay

# 2525: SMTP from apps (listen.addr; must be 0.0.0.0:2525 with
# allowed_networks for other containers to reach it). 9125: admin.addr, off
# unless set: /metrics, /healthz and /readyz only (the queue API there needs
# admin.token_env or token_file, and then a bearer token).
#
# The binary is also the sendmail of an app image: COPY --from=this-image
# /usr/local/bin/tlsrelay /usr/sbin/sendmail (deploy/sendmail/Dockerfile.php).
EXPOSE 2525 9125

# Exec form, no shell: `health` asks the running relay's /readyz over the
# spool's control socket (SPOOL/control.sock), so it needs no port either.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tlsrelay", "health", "-dir", "/var/spool/tlsrelay"]

ENTRYPOINT ["/usr/local/bin/tlsrelay"]
CMD ["serve", "-config", "/etc/tlsrelay/relay.yaml"]
