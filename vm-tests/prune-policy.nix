# VM test (a): the prune policy as deployed by the module.
#  - autoPrune's `docker-prune.timer` does not exist (LoadState=not-found) and nothing triggers,
#    wants or requires the docker module's own (always defined) `docker-prune.service`;
#  - `ci-docker-prune.timer` is loaded, enabled, active, with a next elapse;
#  - a run below the threshold removes nothing (same image ids, a stopped container and an
#    untagged build leftover stay) and its journal says it keeps the local image cache;
#  - failing side: with the disk gate forced open (`--threshold 0 --until 0s`) the same binary
#    does remove the build leftover — so "nothing removed" above is the gate's doing — and
#    still keeps the registry image (the cache);
#  - issue 21: with node_exporter's textfile collector on, the module's metrics file
#    (metricsFile's default) appears after the run and node_exporter serves its samples.
{ pkgs, common }:
let
  textDir = "/var/lib/prometheus-node-exporter-text";
in
{
  name = "ci-docker-prune-policy";
  nodes.machine =
    { ... }:
    {
      imports = [ common.node ];
      services.prometheus.exporters.node = {
        enable = true;
        enabledCollectors = [ "textfile" ];
        extraFlags = [ "--collector.textfile.directory=${textDir}" ];
      };
      systemd.tmpfiles.rules = [ "d ${textDir} 0755 root root -" ];
      environment.systemPackages = [ pkgs.curl ];
    };
  testScript = ''
    import re
    start_all()
    ${common.setup}

    with subtest("autoPrune's timer is absent and nothing triggers the docker module's service"):
        state = machine.succeed("systemctl show -P LoadState docker-prune.timer").strip()
        assert state == "not-found", f"docker-prune.timer: LoadState={state}"
        machine.fail("test -e /etc/systemd/system/docker-prune.timer")
        # nixpkgs' docker module defines docker-prune.service whenever Docker is enabled (only
        # its timer depends on autoPrune.enable): present and inert is right
        for prop in ["TriggeredBy", "WantedBy", "RequiredBy"]:
            by = machine.succeed(f"systemctl show -P {prop} docker-prune.service").strip()
            assert by == "", f"docker-prune.service is pulled in: {prop}={by}"
        active = machine.succeed("systemctl show -P ActiveState docker-prune.service").strip()
        assert active != "active", f"docker-prune.service ran: ActiveState={active}"

    with subtest("ci-docker-prune.timer is loaded, enabled, active, scheduled"):
        machine.wait_for_unit("ci-docker-prune.timer")
        assert machine.succeed("systemctl show -P LoadState ci-docker-prune.timer").strip() == "loaded"
        assert machine.succeed("systemctl is-enabled ci-docker-prune.timer").strip() == "enabled"
        assert machine.succeed("systemctl show -P ActiveState ci-docker-prune.timer").strip() == "active"
        nxt = machine.succeed("systemctl show -P NextElapseUSecRealtime ci-docker-prune.timer").strip()
        assert nxt not in ("", "0", "n/a"), f"no next elapse: {nxt!r}"
        # the deployed command line: never --all, never volumes (the cases of
        # verify/checks/src/never_all.rs: --all or --all=V with V not false/0, a short-flag
        # cluster with `a`, a flag naming volumes, the `volume` command)
        cmd = machine.succeed("systemctl show -P ExecStart ci-docker-prune.service")
        def asks_for_all(w):
            return w == "--all" or (w.startswith("--all=") and w[6:] not in ("false", "0")) \
                or re.fullmatch(r"-[a-z]*a[a-z]*", w) is not None
        def asks_for_volumes(w):
            return (w.startswith("-") and "volume" in w.split("=")[0]) or w in ("volume", "volumes")
        words = [w.strip('"').lower() for w in cmd.split()]
        bad = [w for w in words if asks_for_all(w) or asks_for_volumes(w)]
        assert not bad, f"{bad}: {cmd}"
        assert "--threshold 80" in cmd, cmd

    with subtest("state to keep: a cached registry image, a stopped container, a build leftover"):
        machine.succeed("docker pull redis:7-alpine")
        machine.succeed("docker create --name stopped redis:7-alpine")
        machine.succeed("echo leftover > /tmp/f && tar -C /tmp -cf /tmp/leftover.tar f")
        leftover = machine.succeed("docker import /tmp/leftover.tar").strip()
        before = image_ids()
        assert leftover in before

    with subtest("below the threshold the service removes nothing and says so"):
        usage = int(machine.succeed("df --output=pcent / | tail -1 | tr -dc 0-9"))
        assert usage < 80, f"/ is at {usage}%, the test needs it below the threshold"
        machine.fail("test -e ${textDir}/ci-docker-prune.prom")
        machine.succeed("systemctl start ci-docker-prune.service")
        assert machine.succeed("systemctl show -P Result ci-docker-prune.service").strip() == "success"
        machine.succeed("journalctl -u ci-docker-prune.service -o cat | grep 'keeping local image cache'")
        assert image_ids() == before, "a run below the threshold removed images"
        machine.succeed("docker container inspect stopped")

    with subtest("the metrics file appears after the run and node_exporter serves it"):
        exec_start = machine.succeed("systemctl show -P ExecStart ci-docker-prune.service")
        assert "--metrics-file ${textDir}/ci-docker-prune.prom" in exec_start, exec_start
        prom = machine.succeed("cat ${textDir}/ci-docker-prune.prom")
        print(prom)
        skipped = 'ci_docker_prune_last_run_outcome{outcome="skipped"} 1'
        assert skipped in prom, prom
        assert 'ci_docker_prune_gate_open{gate="disk"} 0' in prom, prom
        assert re.search(r'^ci_docker_prune_disk_usage_percent\{path="/"\} [0-9]+$', prom, re.M), prom
        mode = machine.succeed("stat -c %a ${textDir}/ci-docker-prune.prom").strip()
        assert mode == "644", f"node_exporter cannot read a {mode} file"
        machine.wait_for_unit("prometheus-node-exporter.service")
        machine.wait_for_open_port(9100)
        scraped = machine.succeed("curl -sf http://localhost:9100/metrics")
        assert skipped in scraped, "node_exporter does not serve the prune's metrics"
        assert "node_textfile_scrape_error 0" in scraped, "the textfile collector failed"

    with subtest("failing side: gates forced open, the leftover goes, the cache stays"):
        out = machine.succeed(
            "ci-docker-prune --threshold 0 --until 0s --run-stack-pattern '^never-matches-any-service$' --json"
        )
        print(out)
        after = image_ids()
        assert leftover not in after, "the build leftover should have been removed"
        redis = machine.succeed("docker image inspect -f '{{.Id}}' redis:7-alpine").strip()
        assert redis in after, "the registry image (the cache) was removed"
  '';
}
