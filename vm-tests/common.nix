# Shared pieces of the NixOS VM tests: one node with Docker in swarm mode, a private
# registry serving the fixture images (no network: nothing can be pulled from Docker Hub),
# the daemon pointed at it as a registry mirror so `redis:7-alpine` — the real name —
# resolves locally, and services.ci-docker-prune enabled.
{ pkgs, packages }:
let
  registry = "127.0.0.1:5000";

  # Stand-in for redis:7-alpine: the real redis server in several layers, created long ago
  # (1970, dockerTools' reproducible default) like a real base image is — so `until=24h`
  # does not protect it; only the policy does.
  redisImage = pkgs.dockerTools.buildLayeredImage {
    name = "redis";
    tag = "7-alpine";
    contents = [
      pkgs.redis
      pkgs.busybox
    ];
    maxLayers = 6;
    config = {
      Cmd = [
        "redis-server"
        "--protected-mode"
        "no"
      ];
      Env = [ "PATH=/bin" ];
    };
  };
in
{
  inherit registry redisImage;

  node =
    { ... }:
    {
      imports = [ ../nix/modules/docker-prune.nix ];

      virtualisation = {
        memorySize = 2048;
        diskSize = 4096;
        docker = {
          enable = true;
          # Off (its default); the module's assertion refuses it (see module-eval).
          autoPrune.enable = false;
          # NixOS defaults to live-restore, which dockerd refuses in swarm mode.
          liveRestore = false;
          daemon.settings = {
            # The classic image store, as on the hosts this policy is for (Docker 20.10-28);
            # the containerd store (default for new installs from Docker 29) keeps images
            # and "dangling" differently.
            features.containerd-snapshotter = false;
            registry-mirrors = [ "http://${registry}" ];
            insecure-registries = [ registry ];
          };
        };
      };

      services.dockerRegistry = {
        enable = true;
        listenAddress = "127.0.0.1";
        port = 5000;
        enableDelete = true;
      };

      services.ci-docker-prune = {
        enable = true;
        package = packages.ci-docker-prune;
      };

      environment.systemPackages = [
        packages.ci-docker-prune
        packages.ccci-verify
        pkgs.jq
        pkgs.git
      ];
    };

  # Python for the test driver: start the pieces, push the fixture image into the private
  # registry as library/redis:7-alpine, remove it locally so the first pull is cold,
  # and initialise a one-node swarm.
  setup = ''
    machine.wait_for_unit("docker-registry.service")
    machine.wait_for_open_port(5000)
    machine.wait_for_unit("docker.service")
    machine.succeed("docker load < ${redisImage}")
    machine.succeed("docker tag redis:7-alpine ${registry}/library/redis:7-alpine")
    machine.succeed("docker push ${registry}/library/redis:7-alpine")
    machine.succeed("docker rmi redis:7-alpine ${registry}/library/redis:7-alpine")
    machine.succeed("test -z \"$(docker image ls -aq)\"")
    machine.succeed("docker swarm init --advertise-addr 127.0.0.1")

    layer_digests = machine.succeed(
        "docker manifest inspect --insecure ${registry}/library/redis:7-alpine | jq -r '.layers[].digest'"
    ).split()
    assert len(layer_digests) >= 3, layer_digests

    def registry_blob_gets():
        """Layer downloads the registry has served so far, from its access log: GETs of the
        manifest's layer blobs only. Not the config blob: `docker service create` resolves the
        image through /distribution/.../json, which fetches the config blob on every deploy,
        warm or cold."""
        log = machine.succeed("journalctl -u docker-registry.service -o cat")
        return sum(
            1
            for line in log.splitlines()
            if "GET /v2/library/redis/blobs/" in line and any(d in line for d in layer_digests)
        )

    def image_ids():
        return set(machine.succeed("docker image ls -aq --no-trunc").split())
  '';
}
