# syntax=docker/dockerfile:1
# Build stage: a static raftcdc binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/raftcdc ./cmd/raftcdc

# Runtime stage: the binary on a slim base; it keeps a shell so the compose
# demo's one-shot service can run a short script of ctl commands.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 raftcdc && mkdir -p /data /sink && chown raftcdc /data /sink
COPY --from=build /out/raftcdc /usr/local/bin/raftcdc
USER raftcdc
VOLUME ["/data"]
EXPOSE 7946/tcp 7946/udp 7947/tcp 8300/tcp
ENTRYPOINT ["/usr/local/bin/raftcdc"]
CMD ["server", "--data-dir", "/data", "--gossip-addr", "0.0.0.0:7946", "--raft-addr", "0.0.0.0:7947", "--api-addr", "0.0.0.0:8300"]
