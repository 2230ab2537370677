//! Prints digests to standard output: the built-in robot, for trying sluice with nothing else.
//! It runs behind the same window, rate guard and store as a real robot.

use std::io::Write;

use super::{Endpoint, Outcome};
use crate::message::Prepared;

/// A console robot prints; it has nothing to post to.
pub fn check(robot: &str, e: &Endpoint) -> Result<(), String> {
    if e.webhook.is_some() || e.secret.is_some() {
        return Err(format!(
            "{robot}: provider \"console\" prints digests and takes no webhook or secret"
        ));
    }
    Ok(())
}

pub struct Console {
    name: String,
}

impl Console {
    pub fn new(name: &str) -> Console {
        Console {
            name: name.to_string(),
        }
    }

    pub fn send(&self, id: u64, message: &Prepared) -> Outcome {
        let mut out = std::io::stdout().lock();
        let printed = writeln!(
            out,
            "──── robot {} · digest #{id} · {} ────\n{}\n",
            self.name, message.title, message.text
        )
        .and_then(|_| out.flush());
        match printed {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Transient(format!("cannot write to stdout: {e}")),
        }
    }
}
