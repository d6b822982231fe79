# syntax=docker/dockerfile:1
# safeperm image: /usr/local/bin/planner, /usr/local/bin/worker and /usr/local/bin/pvwasim (the
# PVWA simulator, for staging tests) on distroless static, non-root, no shell.
#   docker build -t ghcr.io/safeperm/safeperm:0.1.0 \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg BUILD_TIME=$(git log -1 --format=%cI) .
#   docker run --rm ghcr.io/safeperm/safeperm:0.1.0 /usr/local/bin/worker --version
#   docker run --rm ghcr.io/safeperm/safeperm:0.1.0 /usr/local/bin/planner run -h
# Kubernetes sets command: per container (deploy/kubernetes); the default runs a worker.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# Dependencies first, as their own layer: cached (also via --cache-from) until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
# Cross-compiles natively for the target platform (docker buildx --platform ...).
ARG TARGETOS TARGETARCH
# The context has no .git (.dockerignore), so the build cannot read the
# revision: the linker stamps what the build arguments say (internal/buildinfo).
ARG VERSION=devel REVISION= BUILD_TIME=
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags="-s -w \
      -X github.com/safeperm/safeperm/internal/buildinfo.version=${VERSION} \
      -X github.com/safeperm/safeperm/internal/buildinfo.revision=${REVISION} \
      -X github.com/safeperm/safeperm/internal/buildinfo.time=${BUILD_TIME}" \
    -o /out/ ./cmd/planner ./cmd/worker ./cmd/pvwasim

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static has CA certificates, tzdata and /etc/passwd with nonroot (65532).
COPY --from=build /out/planner /out/worker /out/pvwasim /usr/local/bin/
USER 65532:65532
# The worker's --metrics-addr (deploy/kubernetes uses :9090).
EXPOSE 9090
ENTRYPOINT []
CMD ["/usr/local/bin/worker"]
