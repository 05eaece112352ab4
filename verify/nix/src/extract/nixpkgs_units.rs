//! Units nixpkgs defines itself, so a definition of one in a repository amends it (an
//! override) rather than creating it.
//!
//! Hand-kept, without nixpkgs at hand (it cannot be fetched on the development machines):
//! systemd's own units that NixOS installs (`upstreamSystemUnits` of nixpkgs'
//! `nixos/modules/system/boot/systemd.nix`, read at nixpkgs 0017a06717bb), and the units
//! of widely used nixpkgs modules whose names are literals there. A unit missing from this
//! list is reported as the repository's own: the mark is a hint, not a proof.
//! Template instances (`getty@tty1.service`) match their template (`getty@.service`).

/// Sorted (a test checks it), one unit name with its suffix per entry.
const NIXPKGS_UNITS: &[&str] = &[
    "NetworkManager-wait-online.service",
    "NetworkManager.service",
    "alertmanager.service",
    "autovt@.service",
    "avahi-daemon.service",
    "avahi-daemon.socket",
    "basic.target",
    "bluetooth.target",
    "caddy.service",
    "console-getty.service",
    "container-getty@.service",
    "containerd.service",
    "cron.service",
    "cups.service",
    "cups.socket",
    "dbus.service",
    "dbus.socket",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "docker-prune.service",
    "docker-prune.timer",
    "docker.service",
    "docker.socket",
    "emergency.service",
    "emergency.target",
    "exit.target",
    "fail2ban.service",
    "final.target",
    "fstrim.service",
    "fstrim.timer",
    "getty-pre.target",
    "getty.target",
    "getty@.service",
    "gitea.service",
    "grafana.service",
    "graphical.target",
    "halt.target",
    "hibernate.target",
    "hybrid-sleep.target",
    "k3s.service",
    "kexec.target",
    "kmod-static-nodes.service",
    "local-fs-pre.target",
    "local-fs.target",
    "logrotate.service",
    "logrotate.timer",
    "machine.slice",
    "machines.target",
    "multi-user.target",
    "network-online.target",
    "network-pre.target",
    "network.target",
    "nginx.service",
    "nix-daemon.service",
    "nix-daemon.socket",
    "nix-gc.service",
    "nix-gc.timer",
    "nix-optimise.service",
    "nix-optimise.timer",
    "nss-lookup.target",
    "nss-user-lookup.target",
    "paths.target",
    "postgresql.service",
    "poweroff.target",
    "printer.target",
    "prometheus-node-exporter.service",
    "prometheus.service",
    "reboot.target",
    "remote-fs-pre.target",
    "remote-fs.target",
    "rescue.service",
    "rescue.target",
    "rpcbind.target",
    "serial-getty@.service",
    "shutdown.target",
    "sigpwr.target",
    "sleep.target",
    "slices.target",
    "smartcard.target",
    "sockets.target",
    "sound.target",
    "sshd.service",
    "sshd.socket",
    "suspend.target",
    "swap.target",
    "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sysinit.target",
    "syslog.socket",
    "systemd-ask-password-console.path",
    "systemd-ask-password-console.service",
    "systemd-ask-password-wall.path",
    "systemd-ask-password-wall.service",
    "systemd-backlight@.service",
    "systemd-binfmt.service",
    "systemd-exit.service",
    "systemd-fsck-root.service",
    "systemd-fsck@.service",
    "systemd-halt.service",
    "systemd-hibernate.service",
    "systemd-hostnamed.service",
    "systemd-hybrid-sleep.service",
    "systemd-initctl.service",
    "systemd-initctl.socket",
    "systemd-journal-catalog-update.service",
    "systemd-journal-flush.service",
    "systemd-journald-audit.socket",
    "systemd-journald-dev-log.socket",
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-kexec.service",
    "systemd-localed.service",
    "systemd-logind.service",
    "systemd-machined.service",
    "systemd-modules-load.service",
    "systemd-networkd-wait-online.service",
    "systemd-networkd.service",
    "systemd-nspawn@.service",
    "systemd-poweroff.service",
    "systemd-random-seed.service",
    "systemd-reboot.service",
    "systemd-remount-fs.service",
    "systemd-resolved.service",
    "systemd-rfkill.service",
    "systemd-rfkill.socket",
    "systemd-suspend.service",
    "systemd-sysctl.service",
    "systemd-timedated.service",
    "systemd-timesyncd.service",
    "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup.service",
    "systemd-udev-settle.service",
    "systemd-udev-trigger.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udevd.service",
    "systemd-update-done.service",
    "systemd-update-utmp.service",
    "systemd-user-sessions.service",
    "systemd-vconsole-setup.service",
    "tailscaled.service",
    "time-sync.target",
    "timers.target",
    "umount.target",
    "user-runtime-dir@.service",
    "user.slice",
    "user@.service",
];

/// Whether nixpkgs already defines the system unit `name` (with its suffix): a
/// definition of it in a repository is an override. See the module's docs for where the
/// list comes from and what it cannot know.
pub fn nixpkgs_defines(name: &str) -> bool {
    if NIXPKGS_UNITS.binary_search(&name).is_ok() {
        return true;
    }
    // `getty@tty1.service` is an instance of `getty@.service`.
    match (name.split_once('@'), name.rsplit_once('.')) {
        (Some((stem, _)), Some((_, suffix))) => {
            let template = format!("{stem}@.{suffix}");
            NIXPKGS_UNITS.binary_search(&template.as_str()).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_unique_so_binary_search_finds_every_entry() {
        for w in NIXPKGS_UNITS.windows(2) {
            assert!(w[0] < w[1], "{} before {}", w[0], w[1]);
        }
        for n in NIXPKGS_UNITS {
            assert!(nixpkgs_defines(n), "{n}");
        }
    }

    #[test]
    fn instances_match_their_template_and_own_units_do_not_match() {
        assert!(nixpkgs_defines("getty@tty1.service"));
        assert!(nixpkgs_defines("serial-getty@ttyS0.service"));
        assert!(!nixpkgs_defines("getty@tty1.timer"));
        assert!(!nixpkgs_defines("ci-docker-prune.service"));
        assert!(!nixpkgs_defines("nginx.timer"));
        assert!(!nixpkgs_defines("my@x.service"));
    }
}
