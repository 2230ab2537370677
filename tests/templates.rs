//! Templates that would do unbounded work, on the real binary: `check` and `serve` refuse one
//! within seconds and name it, and a daemon sent one by SIGHUP refuses it, goes on, takes the
//! next reload and stops on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{ChildDaemon, render_config, run_cli};

/// 10^10 loop steps: without a bound on template work this never finishes.
const RUNAWAY: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";

const BASE: &str = "[server]\nlisten = \"{listen}\"\ndata_dir = \"{data_dir}\"\n\
                    [robots.ops]\nprovider = \"console\"\n";

fn with_body(body: &str) -> String {
    format!("{BASE}body_template = '''{body}'''\n")
}

#[tokio::test]
async fn a_runaway_template_is_refused_at_load_with_its_name() {
    let dir = tempfile::tempdir().unwrap();

    // `sluice check`, the template in a file of its own.
    std::fs::write(
        dir.path().join("runaway.md.j2"),
        format!("### x\n{RUNAWAY}\n"),
    )
    .unwrap();
    let checked = dir.path().join("check.toml");
    std::fs::write(
        &checked,
        render_config(
            &format!("{BASE}body_template_file = \"runaway.md.j2\"\n"),
            &dir.path().join("data"),
            support::daemon::free_port(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (code, _, err) = run_cli(&["check", "-c", checked.to_str().unwrap()], None, &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{err}");
    assert!(took < Duration::from_secs(10), "check took {took:?}");
    assert!(
        err.contains("runaway.md.j2: line 2: uses more than 5,000,000 steps of template work"),
        "{err}"
    );

    // `sluice serve`, inline: it exits without ever listening.
    let mut d = ChildDaemon::start(&with_body(RUNAWAY), dir.path());
    let started = Instant::now();
    let code = loop {
        if let Some(code) = d.exited() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve is still loading the template: {}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(1), "{}", d.stderr());
    let err = d.stderr();
    assert!(
        err.contains("robots.ops.body_template: line 1: uses more than 5,000,000 steps"),
        "{err}"
    );
    assert!(err.contains("range()"), "{err}");
    assert!(
        std::net::TcpStream::connect(d.addr).is_err(),
        "something listens on {}",
        d.addr
    );
}

async fn robots(d: &ChildDaemon) -> Vec<String> {
    d.status().await["robots"]
        .as_array()
        .expect("robots")
        .iter()
        .filter_map(|r| r["robot"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_runaway_template_is_refused_and_the_daemon_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(BASE, dir.path());
    d.wait_healthy().await;
    let write = |text: &str| {
        std::fs::write(
            &d.config_path,
            render_config(text, &dir.path().join("data"), d.addr),
        )
        .unwrap()
    };
    let wait_for = |what: &'static str| {
        let log = d.stderr_path.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                if err.contains(what) {
                    return err;
                }
                assert!(Instant::now() < deadline, "no {what:?} in:\n{err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    write(&with_body(RUNAWAY));
    d.signal("HUP");
    let err = wait_for("reload refused").await;
    assert!(
        err.contains("robots.ops.body_template: line 1: uses more than 5,000,000 steps"),
        "{err}"
    );
    assert_eq!(robots(&d).await, ["ops"]);

    // The next reload is served: a robot is added.
    write(&format!("{BASE}[robots.dq]\nprovider = \"console\"\n"));
    d.signal("HUP");
    wait_for("config reloaded").await;
    assert_eq!(robots(&d).await, ["dq", "ops"]);

    let (code, took) = d.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "SIGTERM took {took:?}: {}", d.stderr());
}
