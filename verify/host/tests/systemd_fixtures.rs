//! The unit model on `systemctl show` outputs recorded from a real systemd (fixtures/systemd).

use ccci_host::{parse_show, UnitState};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/systemd")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn one(name: &str, unit: &str) -> UnitState {
    let mut v = parse_show(&fixture(name), &[unit]).unwrap();
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

#[test]
fn active_enabled_timer() {
    let s = one("prune-timer-active.txt", "ci-docker-prune.timer");
    assert!(s.is_loaded() && s.is_enabled() && s.is_active());
    assert_eq!(s.next_elapse(), Some("Tue 2026-11-24 00:55:47 UTC"));
    assert!(!s.is_not_found() && !s.is_stale_leftover());
}

#[test]
fn disabled_timer_has_no_next_elapse() {
    let s = one("prune-timer-disabled.txt", "ci-docker-prune.timer");
    assert!(s.is_loaded());
    assert!(!s.is_enabled() && !s.is_active());
    assert_eq!(s.next_elapse(), None);
}

#[test]
fn service_results_and_exec_start() {
    let ok = one("prune-service-success.txt", "ci-docker-prune.service");
    assert!(!ok.last_run_failed());
    // static: not enabled, and that is right for a timer-triggered service
    assert_eq!(ok.unit_file_state, "static");
    assert!(!ok.is_enabled());
    assert_eq!(
        ok.exec_start,
        vec![vec![
            "/usr/local/bin/ci-docker-prune".to_string(),
            "--threshold".into(),
            "80".into(),
            "--path".into(),
            "/".into(),
            "--until".into(),
            "24h".into()
        ]]
    );
    let failed = one("prune-service-failed.txt", "ci-docker-prune.service");
    assert!(failed.last_run_failed());
    assert_eq!(failed.result, "exit-code");
}

#[test]
fn absent_unit_is_not_found_although_show_exits_zero() {
    let s = one("legacy-timer-not-found.txt", "docker-prune.timer");
    assert!(s.is_not_found());
    assert!(!s.has_unit_file());
    assert!(!s.is_stale_leftover());
}

#[test]
fn masked_linked_and_stale_units_are_not_absent() {
    for f in [
        "legacy-timer-masked.txt",
        "legacy-timer-linked.txt",
        "legacy-timer-stale-file-gone.txt",
    ] {
        let s = one(f, "docker-prune.timer");
        assert!(!s.is_not_found(), "{f}");
        assert!(s.has_unit_file(), "{f}");
        // `linked` is how NixOS installs every unit: present, not stale
        assert_eq!(
            s.is_stale_leftover(),
            f != "legacy-timer-linked.txt",
            "{f}: {}",
            s.summary()
        );
    }
}

#[test]
fn blocks_come_in_the_order_asked() {
    let units = [
        "ci-docker-prune.timer",
        "docker-prune.timer",
        "ci-docker-prune.service",
    ];
    let v = parse_show(&fixture("three-units.txt"), &units).unwrap();
    assert_eq!(v.len(), 3);
    assert!(v[0].is_active());
    assert!(v[1].is_not_found());
    assert_eq!(v[2].id, "ci-docker-prune.service");
    // asking for a different number of units than blocks is an error, not a silent zip
    assert!(parse_show(&fixture("three-units.txt"), &units[..2]).is_err());
}

#[test]
fn garbage_is_a_parse_error() {
    assert!(parse_show("this is not systemctl output", &["x.timer"]).is_err());
    assert!(parse_show("", &["x.timer"]).is_err());
    assert!(
        parse_show("Id=x.timer\nActiveState=active\n", &["x.timer"]).is_err(),
        "no LoadState"
    );
}

#[test]
fn exec_argv_ends_at_systemds_own_field_not_at_a_scripts_semicolon() {
    // systemd prints argv unquoted: the shell script's own ` ; ` must stay in the argv
    let v = "{ path=/bin/sh ; argv[]=/bin/sh -c true ; docker system prune -af ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }";
    let argv = ccci_host::systemd::parse_exec(v).unwrap();
    assert_eq!(
        argv,
        ["/bin/sh", "-c", "true", ";", "docker", "system", "prune", "-af"]
    );
    // the Ex form ends at `; flags=`
    let ex = "{ path=/usr/bin/docker ; argv[]=/usr/bin/docker image prune -a ; flags= ; start_time=[n/a] }";
    assert_eq!(
        ccci_host::systemd::parse_exec(ex).unwrap(),
        ["/usr/bin/docker", "image", "prune", "-a"]
    );
}

#[test]
fn every_command_property_is_read() {
    let text = "ExecCondition=\n\
        ExecStartPre={ path=/bin/true ; argv[]=/bin/true ; ignore_errors=no ; start_time=[n/a] }\n\
        ExecStart={ path=/usr/local/bin/ci-docker-prune ; argv[]=/usr/local/bin/ci-docker-prune --threshold 80 ; ignore_errors=no ; start_time=[n/a] }\n\
        ExecStart={ path=/usr/bin/docker ; argv[]=/usr/bin/docker system prune -af ; ignore_errors=yes ; start_time=[n/a] }\n\
        ExecStartPost=\n\
        ExecStopPost={ path=/bin/sh ; argv[]=/bin/sh -c docker volume prune -f ; ignore_errors=no ; start_time=[n/a] }\n";
    let lines = ccci_host::parse_exec_lines(text);
    let props: Vec<&str> = lines.iter().map(|l| l.property.as_str()).collect();
    assert_eq!(
        props,
        ["ExecStartPre", "ExecStart", "ExecStart", "ExecStopPost"]
    );
    assert_eq!(lines[2].argv[0], "/usr/bin/docker");
    assert_eq!(lines[3].argv[..2], ["/bin/sh", "-c"]);
}

#[test]
fn enabled_runtime_is_not_enabled_it_is_gone_at_reboot() {
    let show = |state: &str| {
        let text = format!(
            "Id=t.timer\nLoadState=loaded\nActiveState=active\nUnitFileState={state}\nFragmentPath=/etc/systemd/system/t.timer\n"
        );
        ccci_host::parse_show(&text, &["t.timer"])
            .unwrap()
            .remove(0)
    };
    assert!(show("enabled").is_enabled());
    for state in [
        "enabled-runtime",
        "static",
        "linked",
        "indirect",
        "disabled",
    ] {
        assert!(!show(state).is_enabled(), "{state}");
    }
}
