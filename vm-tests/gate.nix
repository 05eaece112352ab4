# VM test (c): the whole gate. `ccci-verify gate 2pc --target local` runs inside the VM
# (a NixOS host built from this repo with the module enabled) and must pass; its JUnit
# report is copied out of the VM into this check's output ($out/2pc-junit.xml).
# Failing side: a leftover legacy `docker-prune.timer` makes the gate fail (exit 1) on
# `units.legacy-timer-absent`, with a JSON report saying so.
{
  pkgs,
  common,
  src,
  # verify/gates/2pc.toml: [params.repro] deployed_tree and [params.auth] expected_user
  # (the values for a non-sandbox target such as `local`)
  deployedTree ? "/root/cc-ci",
  hubUser ? "nptest2",
}:
{
  name = "ci-docker-prune-gate-2pc";
  nodes.machine = common.node;
  testScript = ''
    start_all()
    ${common.setup}

    with subtest("host state the gate expects"):
        # git at REV: the repo this VM was built from, as a git repository
        machine.succeed(
            "cp -r ${src} /root/repo && chmod -R u+w /root/repo"
            " && git -C /root/repo init -q"
            " && git -C /root/repo add -A"
            " && git -C /root/repo -c user.name=vm -c user.email=vm@localhost commit -qm deployed"
        )
        # the deployed source tree (what the host was built from)
        machine.succeed("mkdir -p ${deployedTree} && cp -r ${src}/nix ${deployedTree}/ && chmod -R u+w ${deployedTree}")
        # the daemon's registry credentials as on the real host (sops writes them there):
        # here a dummy token for the expected user, mode 0600; the VM has no network
        machine.succeed(
            "install -d -m 0700 /root/.docker && umask 077"
            " && printf '{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"%s\"}}}'"
            " \"$(printf '${hubUser}:not-a-real-token' | base64 -w0)\" > /root/.docker/config.json"
        )

    with subtest("the system: a stand-in toplevel git evaluates to"):
        # repro.system-git-eq-host compares /run/current-system with the toplevel git at REV
        # evaluates to. This VM's own system comes from the VM test, which no flake attribute
        # of the repo names, so the gate runs with a spec copy pointing the check at the
        # sandbox's stand-in flake, built here by the VM's Nix and made current.
        attr = "nixosConfigurations.ccci-host.config.system.build.toplevel"
        flake = "path:/root/repo/fixtures/nix/system"
        nix = "nix --extra-experimental-features 'nix-command flakes'"
        out = machine.succeed(f"{nix} eval --raw {flake}#{attr}.outPath").strip()
        # The VM's own /run/current-system stays as it is: the driver reaches bash, base64,
        # git, docker and ccci-verify through /run/current-system/sw/bin, and repointing it at
        # the stand-in (a plain file) made every later command exit 127. The stand-in gets a
        # link of its own, which the spec copy names (`current_system`).
        machine.succeed(f"{nix} build --no-link {flake}#{attr} && ln -sfn {out} /run/ccci-standin-system")
        machine.succeed(
            "cp /root/repo/verify/gates/2pc.toml /root/2pc-vm.toml"
            " && printf '\\n[targets.local.params.repro]\\nsystem_flake = \"fixtures/nix/system\"\\n"
            f"system_attr = \"{attr}\"\\ncurrent_system = \"/run/ccci-standin-system\"\\n' >> /root/2pc-vm.toml"
        )
        # the running system is untouched: the driver's tools still resolve
        machine.succeed("test -x /run/current-system/sw/bin/bash && bash -c true")

    with subtest("ccci-verify gate 2pc --target local passes"):
        machine.succeed(
            "cd /root/repo && ccci-verify gate /root/2pc-vm.toml --target local --repo /root/repo"
            " --format junit --output /tmp/2pc-junit.xml"
        )
        machine.copy_from_vm("/tmp/2pc-junit.xml", "")
        junit = machine.succeed("cat /tmp/2pc-junit.xml")
        assert "<testsuite" in junit and "failures=\"0\"" in junit and "errors=\"0\"" in junit, junit
        assert "not-a-real-token" not in junit, "the secret leaked into the report"
        # the issue-10 checks ran and passed inside a real NixOS
        for check_id in ["repro.unit-config-git-eq-host", "repro.system-git-eq-host", "repro.units-git-eq-host"]:
            assert check_id in junit, f"{check_id} missing from the report"
        report = machine.succeed(
            "cd /root/repo && ccci-verify gate /root/2pc-vm.toml --target local --repo /root/repo"
            " --check repro.unit-config-git-eq-host --check repro.system-git-eq-host"
            " --check repro.units-git-eq-host --check auth.daemon-authenticated --format json"
        )
        import json
        verdicts = {c["id"]: (c["verdict"], c["blocking"]) for c in json.loads(report)["checks"]}
        for check_id, (verdict, blocking) in verdicts.items():
            assert verdict == "pass" and blocking, f"{check_id}: {verdict}: {report}"

    with subtest("failing side: a legacy docker-prune.timer fails the gate"):
        machine.succeed(
            "printf '[Timer]\\nOnCalendar=daily\\n[Install]\\nWantedBy=timers.target\\n'"
            " > /run/systemd/system/docker-prune.timer"
            " && printf '[Service]\\nType=oneshot\\nExecStart=/run/current-system/sw/bin/true\\n'"
            " > /run/systemd/system/docker-prune.service"
            " && systemctl daemon-reload && systemctl start docker-prune.timer"
        )
        status, out = machine.execute(
            "cd /root/repo && ccci-verify gate 2pc --target local --repo /root/repo"
            " --check units.legacy-timer-absent --format json"
        )
        print(out)
        assert status == 1, f"expected exit 1 (a check failed), got {status}"
        assert "units.legacy-timer-absent" in out and "\"fail\"" in out, out
        machine.succeed("rm /run/systemd/system/docker-prune.* && systemctl daemon-reload")
  '';
}
