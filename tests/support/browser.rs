//! Headless Debian chromium driven through chromedriver, for the console's browser test.
//!
//! [`Browser::start`] returns `None` (after a loud banner) when /usr/bin/chromium or
//! /usr/bin/chromedriver is missing; `.ci/run` installs both. chromedriver runs on a free port and
//! is killed on drop; every wait is bounded.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::common::capabilities::desiredcapabilities::AlertBehaviour;
use thirtyfour::prelude::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Kills and reaps chromedriver when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    driver: Option<WebDriver>,
    _chromedriver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A headless chromium session, or `None` (said loudly) without Debian's chromium.
    pub async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            eprintln!(
                "\n{bar}\nSKIPPED: the console's browser test needs Debian's chromium and \
                 chromium-driver; .ci/run installs them\n{bar}\n",
                bar = "=".repeat(78)
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let chromedriver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn chromedriver"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = match reqwest::get(format!("{url}/status")).await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).unwrap();
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1280,900",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        // Leave dialogs open, so that alerts_opened() can see them.
        caps.set_unexpected_alert_behaviour(AlertBehaviour::Ignore)
            .unwrap();
        let driver = WebDriver::new(url, caps).await.expect("chromium session");
        Some(Browser {
            driver: Some(driver),
            _chromedriver: chromedriver,
            _profile: profile,
        })
    }

    fn d(&self) -> &WebDriver {
        self.driver.as_ref().expect("browser already quit")
    }

    pub async fn goto(&self, url: &str) {
        self.d().goto(url).await.expect("goto");
    }

    /// Saves `<target>/console/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|t| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(t))
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let dir = target.join("console");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        self.d().screenshot(&path).await.expect("screenshot");
        path
    }

    async fn element(&self, testid: &str) -> WebElement {
        self.d()
            .query(By::Css(format!("[data-testid=\"{testid}\"]")))
            .wait(Duration::from_secs(10), Duration::from_millis(50))
            .first()
            .await
            .unwrap_or_else(|e| panic!("no [data-testid={testid}] in 10 s: {e}"))
    }

    /// Clicks the element with `data-testid=testid`, waiting for it at most 10 s.
    pub async fn click(&self, testid: &str) {
        self.element(testid).await.click().await.expect("click");
    }

    /// The visible text of the element with `data-testid=testid`.
    pub async fn text(&self, testid: &str) -> String {
        self.element(testid).await.text().await.expect("text")
    }

    /// `window.__cspViolations` (filled by the page's own script from `securitypolicyviolation`
    /// events); `Err` when it is undefined, i.e. the script did not load.
    pub async fn csp_violations(&self) -> Result<Vec<String>, String> {
        let ret = self
            .d()
            .execute("return window.__cspViolations;", vec![])
            .await
            .map_err(|e| e.to_string())?;
        match ret.json() {
            serde_json::Value::Array(a) => Ok(a
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()),
            other => Err(format!(
                "window.__cspViolations is {other}: the page's script did not run"
            )),
        }
    }

    /// Runs `script` in the page and returns what it returned.
    pub async fn execute(&self, script: &str) -> serde_json::Value {
        let ret = self.d().execute(script, vec![]).await.expect("execute");
        ret.json().clone()
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        self.d().source().await.expect("page source")
    }

    /// Whether a JS alert/confirm/prompt dialog is open now.
    pub async fn alerts_opened(&self) -> bool {
        self.d().get_alert_text().await.is_ok()
    }

    pub async fn quit(mut self) {
        if let Some(d) = self.driver.take() {
            d.quit().await.expect("quit chromium");
        }
    }
}
