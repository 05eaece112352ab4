# VM test (b): the local image store is the cache.
#  - redis:7-alpine deployed as a swarm service (pulled by digest through the registry
#    mirror; the registry's access log proves layers were downloaded: the positive control);
#  - torn down as a CI teardown does (`docker service rm`): the image (same id) stays, also
#    after a ci-docker-prune run and after a run with every gate forced open;
#  - redeployed: converges with zero layer downloads (the registry served no blob);
#  - failing side: the daemon's own dangling prune (`docker image prune --filter until=24h`,
#    what autoPrune-like policies run) deletes that very image, because a swarm-pulled image
#    has no tag. That is why ci-docker-prune selects candidates itself.
{ pkgs, common }:
{
  name = "ci-docker-prune-cache";
  nodes.machine = common.node;
  testScript = ''
    import time

    start_all()
    ${common.setup}

    def wait_converged(name):
        machine.wait_until_succeeds(
            f"test \"$(docker service ls --filter name={name} --format '{{{{.Replicas}}}}')\" = 1/1", timeout=120
        )

    def wait_torn_down(name):
        machine.succeed(f"docker service rm {name}")
        machine.wait_until_succeeds(f"test -z \"$(docker ps -aq --filter label=com.docker.swarm.service.name={name})\"", timeout=60)

    with subtest("cold deploy pulls layers from the registry"):
        cold_before = registry_blob_gets()
        machine.succeed("docker service create --detach --name probe redis:7-alpine")
        wait_converged("probe")
        machine.wait_until_succeeds(f"test $(journalctl -u docker-registry.service -o cat | grep -c 'GET /v2/library/redis/blobs/') -gt {cold_before}")
        cold_gets = registry_blob_gets() - cold_before
        assert cold_gets >= 3, f"expected the cold deploy to download layers, saw {cold_gets} blob GETs"
        ids = image_ids()
        assert len(ids) == 1, ids
        image = ids.pop()
        digests = machine.succeed(f"docker image inspect -f '{{{{json .RepoDigests}}}}' {image}")
        assert "redis@sha256:" in digests, f"the swarm pulled by digest: {digests}"

    with subtest("teardown keeps the image (same id)"):
        wait_torn_down("probe")
        assert image in image_ids(), "the teardown removed the cached image"

    with subtest("ci-docker-prune keeps it: below threshold, and with every gate forced open"):
        machine.succeed("systemctl start ci-docker-prune.service")
        assert image in image_ids()
        out = machine.succeed(
            "ci-docker-prune --threshold 0 --until 0s --run-stack-pattern '^never-matches-any-service$' --json"
        )
        print(out)
        assert image in image_ids(), "ci-docker-prune removed a registry image (the cache)"

    with subtest("warm redeploy converges with zero layer downloads"):
        warm_before = registry_blob_gets()
        machine.succeed("docker service create --detach --name probe redis:7-alpine")
        wait_converged("probe")
        time.sleep(2)  # let journald catch up with the registry's access log
        warm_gets = registry_blob_gets() - warm_before
        assert warm_gets == 0, f"the warm redeploy downloaded {warm_gets} blobs"
        assert image in image_ids()

    with subtest("failing side: the daemon's dangling prune would evict the cache"):
        wait_torn_down("probe")
        dangling = machine.succeed("docker image ls -q --no-trunc --filter dangling=true").split()
        assert image in dangling, "a swarm-pulled image counts as dangling to the daemon"
        machine.succeed("docker image prune -f --filter until=24h")
        assert image not in image_ids(), "expected the daemon's prune to delete the swarm-pulled image"
  '';
}
