# syntax=docker/dockerfile:1
# ts-cgnat-agent: NativeAOT binary on Debian 12 with the firewall tools it drives.
#
#   docker build -f deploy/agent.Dockerfile -t ts-cgnat-agent:0.1.0 .      (from the repository root)
#
# Base images are pinned by tag (the SDK this repository builds with, a Debian point release). To pin
# by digest as well, look each one up where the registry is reachable and append it to the tag:
#   docker buildx imagetools inspect mcr.microsoft.com/dotnet/sdk:10.0.401-noble   -> Digest: sha256:...
#   FROM mcr.microsoft.com/dotnet/sdk:10.0.401-noble@sha256:<digest> AS build
# (The development machines have no registry access, so no digest is written here.)
# Multi-arch: NativeAOT compiles for the architecture it runs on, so build each platform natively
# (or under emulation), e.g. docker buildx build --platform linux/amd64,linux/arm64.

FROM mcr.microsoft.com/dotnet/sdk:10.0.401-noble AS build
# NativeAOT links with the platform toolchain (clang) and needs the zlib headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads (.dockerignore keeps the rest out): the shared build settings, the
# analyzer configuration (warnings are errors) and the sources.
COPY Directory.Build.props .editorconfig ./
COPY src/ src/
ARG TARGETARCH
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    rid="linux-$([ "$TARGETARCH" = arm64 ] && echo arm64 || echo x64)" \
 && dotnet publish src/NodeAgent/NodeAgent.csproj -c Release -r "$rid" \
      -p:PublishAot=true -p:StripSymbols=true -o /out \
 && dotnet publish src/ClusterAgent/ClusterAgent.csproj -c Release -r "$rid" \
      -p:PublishAot=true -p:StripSymbols=true -o /out \
 && rm -f /out/*.dbg

# Debian 12 (glibc 2.36). The SDK image is Ubuntu 24.04 (glibc 2.39), and a NativeAOT binary needs a
# glibc at least as new as the one it was linked against for every symbol version it uses; the
# "version" run below fails the build if that ever stops holding.
FROM debian:12.11-slim
# iptables brings both iptables-legacy and iptables-nft (the agent writes with the one tailscaled
# uses), ipset the hash:net sets, nftables the nft tool for tailscaled's native nftables runner.
# libssl3 and ca-certificates: TLS to the API server and an https OTLP endpoint.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset nftables libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Two binaries side by side: ts-cgnat-agent (every command; small, so it starts in milliseconds) replaces itself
# with ts-cgnat-agent-cluster for `run` in cluster mode, the one command that needs KubernetesClient
# (src/NodeAgent/Cli/ClusterMode.cs). The PID, arguments and environment stay the same.
COPY --from=build /out/ts-cgnat-agent /out/ts-cgnat-agent-cluster /usr/local/bin/
RUN ["/usr/local/bin/ts-cgnat-agent", "version"]
RUN ["/usr/local/bin/ts-cgnat-agent-cluster", "version"]
# uid 0, but the pod grants only NET_ADMIN and NET_RAW (charts/ts-cgnat-operator): the host paths it
# writes (xtables lock, state directory) are root's, and tailscaled's LocalAPI takes preference
# writes only from uid 0.
USER 0:0
ENTRYPOINT ["/usr/local/bin/ts-cgnat-agent"]
CMD ["run"]
