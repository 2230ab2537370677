//! After the demo's summary: its sluice stays up for the web console.

use std::time::Duration;

/// Keeps the demo's sluice (and its simulated robots) up so the person can look at the web
/// console: until Enter (when standard input is a terminal), or for `--linger`.
pub(super) async fn linger(addr: std::net::SocketAddr, how: Option<Duration>) {
    use std::io::IsTerminal;
    let url = format!("http://{addr}/ui/");
    match how {
        Some(d) if d.is_zero() => {}
        Some(d) => {
            println!(
                "\nThe web console is at {url} for {}.",
                humantime::format_duration(d)
            );
            tokio::time::sleep(d).await;
        }
        None if std::io::stdin().is_terminal() => {
            println!(
                "\nThe web console is at {url}: open it to see the robots, digests and dead letters. Press Enter to stop."
            );
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)
            })
            .await;
        }
        None => {}
    }
}
