//! The `sluice` command: parses the command line and calls into the library. Errors are printed
//! once, here, as `sluice: <reason>` on one line; exit 1 for failures, 2 for usage (clap).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sluice::client::{self, Client, ClientError, Spool};
use sluice::config::{Config, redact_url};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Durable, rate-limited alert digests for chat robots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (with no -c: the built-in config, one console robot, data in ./sluice-data).
    Serve {
        /// Config file (TOML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Queue an alert (or many, with --json) with a running daemon.
    Send(SendArgs),
    /// Show each robot's state, queue and rate use.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send the alerts of digests already delivered again, as new digests (a group was dissolved,
    /// a new robot replaces it).
    Replay {
        #[command(flatten)]
        conn: Conn,
        /// Whose delivered digests.
        #[arg(long)]
        robot: String,
        /// Delivered within this long: "2h", "30m", "1d".
        #[arg(long)]
        since: String,
        /// Send them to this robot instead.
        #[arg(long)]
        to: Option<String>,
    },
    /// Have the running daemon send one test message to ROBOT through its own rate guard
    /// (refused, not delayed, when no send permit is free or the robot is paused).
    Test {
        #[command(flatten)]
        conn: Conn,
        robot: String,
    },
    /// Make the daemon read its config file again (like SIGHUP): robots added, removed or
    /// changed, queues and rate history kept.
    Reload {
        #[command(flatten)]
        conn: Conn,
    },
    /// Send the queue of a robot removed from the config to a configured robot.
    Move {
        #[command(flatten)]
        conn: Conn,
        /// The removed robot whose alerts are still queued.
        #[arg(long)]
        robot: String,
        /// The configured robot to deliver them.
        #[arg(long)]
        to: String,
    },
    /// Deliver the alerts `sluice send` spooled while the daemon was unreachable.
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
    },
    /// Digests a robot refused for good: list them, or queue their alerts again.
    Dead {
        #[command(subcommand)]
        action: Option<DeadAction>,
    },
    /// See sluice work, nothing to configure: chat robot simulators (DingTalk by default), a
    /// daemon with a temporary store and batch jobs firing a burst of alerts, with a live view
    /// and a summary.
    Demo {
        /// How many alerts the batch jobs send in all.
        #[arg(long, default_value = "5000", value_name = "N", value_parser = sluice::demo::parse_alerts)]
        alerts: u64,
        /// How many robots (chat groups) they are spread over, dealt to the platforms in turn
        /// (at least one per platform). Default: 2, or one per platform when --platforms names
        /// more.
        #[arg(long, value_name = "K", value_parser = sluice::demo::parse_robots)]
        robots: Option<usize>,
        /// Compress time: 10 makes the robot's minute 6 s (and everything else in proportion).
        #[arg(long, default_value = "10", value_name = "X", value_parser = sluice::demo::parse_speed)]
        speed: f64,
        /// The chat platforms to simulate, side by side, each with its own limits: a
        /// comma-separated list of dingtalk, feishu, wecom, slack, each named once.
        #[arg(long, default_value = "dingtalk", value_name = "LIST", value_parser = sluice::demo::parse_platforms)]
        // Spelled out so that clap takes the list as one value, parsed whole.
        platforms: ::std::vec::Vec<sluice::demo::Platform>,
        /// Three sluice nodes on a three-server NATS JetStream cluster (all on 127.0.0.1), the
        /// jobs posting to all three, and the node owning the most robots killed with -9
        /// halfway through. Needs nats-server 2.11 or later.
        #[arg(long)]
        cluster: bool,
        /// The nats-server binary for --cluster. Default: $SLUICE_NATS_SERVER, else
        /// nats-server on PATH, else target/pyenv/bin/nats-server.
        #[arg(long, value_name = "PATH", requires = "cluster")]
        nats_server: Option<PathBuf>,
        /// After the summary, keep the web console (and the simulated robots) up this long,
        /// e.g. 5m; 0s exits at once. Default: until Enter is pressed, when run in a terminal.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "cluster")]
        linger: Option<std::time::Duration>,
    },
    /// Validate a config file and print the robots it defines (secrets redacted).
    Check {
        #[arg(short, long)]
        config: PathBuf,
        /// Show which robots an alert with these labels would reach: 'severity=critical,job=dq'
        /// (`severity` and `source` are the alert's own fields).
        #[arg(long, value_name = "LABELS")]
        route: Option<String>,
        /// Send one test message to this robot and report its answer. It bypasses a running
        /// daemon's rate guard (the daemon does not count it); with `sluice serve` running, use
        /// `POST /v1/robots/ROBOT/test` instead.
        #[arg(long, value_name = "ROBOT", conflicts_with = "route")]
        ping: Option<String>,
    },
}

#[derive(Subcommand)]
enum SpoolAction {
    /// Send the spooled alerts now, oldest first.
    Flush {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_name = "DIR")]
        spool: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeadAction {
    /// List dead digests (the default).
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only this robot's.
        #[arg(long)]
        robot: Option<String>,
    },
    /// Queue dead digests' alerts again: all of them, one robot's, or one digest.
    Replay {
        #[command(flatten)]
        conn: Conn,
        /// Only this robot's dead digests.
        #[arg(long)]
        robot: Option<String>,
        /// Only this digest.
        #[arg(long)]
        id: Option<u64>,
        /// Send them to this robot instead of their own.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Args)]
struct SpoolArgs {
    /// Where alerts wait when the daemon cannot be reached [default: ~/.cache/sluice/spool].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Fail instead of spooling when the daemon cannot be reached.
    #[arg(long)]
    no_spool: bool,
}

#[derive(Args)]
struct Conn {
    /// Daemon address, HOST:PORT or URL [default: SLUICE_SERVER, else the config's listen, else 127.0.0.1:9780].
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    /// Config file to take server.listen from.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Bearer token, if the daemon has server.auth_tokens.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    spool: SpoolArgs,
    /// Robot to deliver to (with --json: the default for alerts that name none).
    #[arg(long)]
    robot: Option<String>,
    /// One-line summary of what is wrong.
    #[arg(long, required_unless_present = "json", conflicts_with = "json")]
    title: Option<String>,
    /// Details (markdown); `-` reads standard input.
    #[arg(long)]
    text: Option<String>,
    /// critical, error, warning (default) or info.
    #[arg(long)]
    severity: Option<String>,
    /// firing (default) or resolved.
    #[arg(long)]
    status: Option<String>,
    /// A label, repeatable: --label job=dq_orders.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Alerts as JSON from a file or `-` (stdin): one object, an array, or one object per line.
    #[arg(long, conflicts_with_all = ["text", "severity", "status", "labels"])]
    json: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Threads for the store's blocking calls (see `main`).
const BLOCKING_THREADS: usize = 64;

/// glibc serves a block of 128 KiB or more by `mmap` until the first such block is freed; from
/// then on it raises that threshold to the freed block's size (up to 32 MiB). The buffers of a
/// request of 1 000 alerts (its body, its alerts, its log record: 100–250 KiB each) then come
/// from the heap arenas, between small allocations that live on, and what they free stays with
/// the process: 1 000 000 alerts posted 4 × 1 000 at a time left VmRSS at 90 MiB (75 MiB of it
/// free heap) where 22 MiB were in use. A fixed threshold keeps such blocks mapped, so freeing
/// one gives it back at once (wrk at 16 × 100 and 64 × 1 alerts per POST: no difference).
fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one allocator parameter; it is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    keep_large_blocks_mapped();
    let cli = Cli::parse();
    // The store's blocking calls (seals, flushes, reads of digests) share a bounded pool: ten
    // thousand robots starting at once would otherwise spawn tokio's default of 512 threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref(), Some(sluice::ServeError::MustRestart(_))) => {
            // A thread stuck in the failed store would keep the runtime from shutting down.
            eprintln!("sluice: {e}");
            std::process::exit(sluice::EXIT_RESTART);
        }
        Err(e) => {
            // Each cause once: an error whose message already names its source is not repeated.
            let line = sluice::error_chain(e.as_ref()).replace('\n', " ");
            eprintln!("sluice: {line}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::Send(args) => send(args).await,
        Command::Demo {
            alerts,
            robots,
            speed,
            platforms,
            cluster,
            nats_server,
            linger,
        } => {
            let options = sluice::demo::Options {
                alerts,
                robots: robots.unwrap_or_else(|| sluice::demo::default_robots(&platforms)),
                speed,
                platforms,
                cluster,
                nats_server,
                linger,
            };
            // What only the flags together can get wrong (fewer robots than platforms) is a
            // usage error as well, exit 2 like clap's own.
            if let Err(sluice::demo::DemoError::Usage(why)) = options.check() {
                use clap::CommandFactory;
                Cli::command()
                    .error(clap::error::ErrorKind::ArgumentConflict, why)
                    .exit();
            }
            Ok(sluice::demo::run(options).await?)
        }
        Command::Status { conn, json } => {
            let client = connect(&conn)?;
            if json {
                let status = client.status_json().await?;
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", client::status_table(&client.status().await?));
            }
            Ok(())
        }
        Command::Replay {
            conn,
            robot,
            since,
            to,
        } => {
            sluice::config::parse_duration(&since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let client = connect(&conn)?;
            let list = client.delivered(&robot, &since).await?;
            let ids: Vec<u64> = list.digests.iter().map(|d| d.id).collect();
            let bar = indicatif::ProgressBar::new(ids.len() as u64).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} digests {msg}")
                    .expect("a valid template"),
            );
            let mut alerts = 0;
            for id in &ids {
                let answer = client.redeliver(*id, to.as_deref()).await;
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => {
                        bar.abandon();
                        bail!(
                            "{e} (after {} of {} digests, {alerts} alerts)",
                            bar.position(),
                            ids.len()
                        );
                    }
                };
                alerts += answer.alerts;
                bar.set_message(format!("{alerts} alerts"));
                bar.inc(1);
            }
            bar.finish_and_clear();
            println!(
                "re-delivering {alerts} alerts from {} digests robot {robot} delivered in the last {since}, to robot {}; they go out as new digests within its limits",
                ids.len(),
                to.as_deref().unwrap_or(&robot)
            );
            Ok(())
        }
        Command::Spool {
            action: SpoolAction::Flush { conn, spool },
        } => {
            let client = connect(&conn)?;
            let spool = Spool::new(spool.unwrap_or_else(Spool::default_dir));
            let done = spool.flush(&client).await?;
            println!(
                "delivered {} spooled alerts ({} sends) from {}",
                done.alerts,
                done.sends,
                spool.dir().display()
            );
            if done.rejected > 0 {
                bail!(
                    "{} spooled sends were refused for good; they are in {} with the reason",
                    done.rejected,
                    spool.dir().join("rejected").display()
                );
            }
            Ok(())
        }
        Command::Dead { action } => {
            match action.unwrap_or(DeadAction::List {
                conn: Conn {
                    server: std::env::var("SLUICE_SERVER").ok(),
                    config: None,
                    token: std::env::var("SLUICE_TOKEN").ok(),
                },
                robot: None,
            }) {
                DeadAction::List { conn, robot } => {
                    let dead = connect(&conn)?.dead(robot.as_deref()).await?;
                    print!("{}", client::dead_table(&dead));
                }
                DeadAction::Replay {
                    conn,
                    robot,
                    id,
                    to,
                } => {
                    let answer = connect(&conn)?
                        .replay(robot.as_deref(), id, to.as_deref())
                        .await?;
                    let digests = answer.replayed.len();
                    println!(
                        "replayed {digests} dead digest{}: {} alert{} queued again",
                        if digests == 1 { "" } else { "s" },
                        answer.alerts,
                        if answer.alerts == 1 { "" } else { "s" },
                    );
                }
            }
            Ok(())
        }
        Command::Test { conn, robot } => {
            let t = connect(&conn)?.test(&robot).await?;
            let said = t
                .said
                .as_deref()
                .map_or(String::new(), |s| format!(": {s}"));
            match t.outcome.as_deref() {
                Some("ok") => {
                    println!(
                        "robot {} accepted the test message ({}/{} sent in the last period)",
                        t.robot, t.sends_in_period, t.rate_limit
                    );
                    Ok(())
                }
                other => bail!(
                    "robot {} answered the test message as {}{said}",
                    t.robot,
                    other.unwrap_or("unknown")
                ),
            }
        }
        Command::Reload { conn } => {
            let r = connect(&conn)?.reload().await?;
            let list = |names: &[String]| {
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            };
            println!(
                "reloaded: added {}; removed {}; changed {}; unchanged {}",
                list(&r.added),
                list(&r.removed),
                list(&r.changed),
                list(&r.unchanged)
            );
            if !r.needs_restart.is_empty() {
                println!(
                    "not applied until a restart: {} (the running values stay)",
                    list(&r.needs_restart)
                );
            }
            Ok(())
        }
        Command::Move { conn, robot, to } => {
            let r = connect(&conn)?.move_queue(&robot, &to).await?;
            println!(
                "moved {} alert{} from {robot} to {to} (with {} sealed digest{} it had not delivered)",
                r.alerts,
                if r.alerts == 1 { "" } else { "s" },
                r.digests,
                if r.digests == 1 { "" } else { "s" },
            );
            Ok(())
        }
        Command::Check {
            config,
            route,
            ping,
        } => {
            let c = Config::load(&config)?;
            if let Some(name) = ping {
                let Some(robot) = c.robots.get(&name) else {
                    bail!(
                        "--ping: unknown robot {name:?}; configured robots: {}",
                        c.robot_names()
                    );
                };
                let client = sluice::provider::http_client();
                let provider = sluice::provider::Provider::new(
                    &robot.target(),
                    c.server.public_url.as_deref(),
                    client.as_ref().map_err(String::as_str),
                )
                .map_err(|e| anyhow::anyhow!("--ping {name}: {e}"))?;
                let outcome = provider.ping(&robot.target()).await;
                use sluice::provider::Outcome;
                return match outcome {
                    Outcome::Ok => {
                        println!("robot {name} accepted the test message");
                        Ok(())
                    }
                    Outcome::Throttled(r, _) => {
                        bail!("robot {name} is rate-limiting us right now: {r}")
                    }
                    Outcome::Transient(r) => bail!("cannot reach robot {name} right now: {r}"),
                    Outcome::Robot(r) => bail!(
                        "robot {name} refuses our messages: {r}; {}",
                        robot.provider.what_to_check()
                    ),
                    Outcome::Message(r) => bail!("robot {name} refused the test message: {r}"),
                    Outcome::Quota(r) => bail!("robot {name}'s send quota is spent: {r}"),
                };
            }
            if let Some(spec) = route {
                let mut labels = sluice::route::parse_label_list(&spec)
                    .map_err(|e| anyhow::anyhow!("--route: {e}"))?;
                let severity = labels
                    .remove("severity")
                    .unwrap_or_else(|| "warning".into());
                if sluice::alert::Severity::parse(&severity).is_none() {
                    bail!(
                        "--route: unknown severity {severity:?}; expected critical, error, warning or info"
                    );
                }
                let source = labels.remove("source");
                let subject = sluice::route::Subject {
                    labels: &labels,
                    severity: &severity,
                    source: source.as_deref(),
                };
                if c.routes.is_empty() && c.robots.len() == 1 {
                    let only = c.robot_names();
                    println!(
                        "no routes configured; alerts that name no robot go to the only robot: {only}"
                    );
                } else {
                    for line in c.routes.explain(&subject) {
                        println!("{line}");
                    }
                }
                return Ok(());
            }
            println!("{}: ok", c.origin);
            match &c.cluster {
                None => println!(
                    "listen {}  data_dir {}",
                    c.server.listen,
                    c.server.data_dir.display()
                ),
                Some(k) => println!(
                    "listen {}  cluster node {} on NATS {} (replicas {}, lease {}, renew {}, clock_skew {}, auth {})",
                    c.server.listen,
                    k.node,
                    k.servers_redacted(),
                    k.replicas,
                    humantime::format_duration(k.lease),
                    humantime::format_duration(k.renew),
                    humantime::format_duration(k.clock_skew),
                    match k.auth {
                        sluice::config::NatsAuth::None => "none",
                        sluice::config::NatsAuth::Token(_) => "token",
                        sluice::config::NatsAuth::Credentials(_) => "credentials file",
                    },
                ),
            }
            let samples = sluice::digest::template::sample_alerts(sluice::unix_ms());
            for r in c.robots.values() {
                let t = &r.timing;
                println!(
                    "robot {}: provider {}, webhook {}, secret {}, keywords [{}], window {}, {} per {}",
                    r.name,
                    r.provider.as_str(),
                    r.webhook.as_deref().map_or("-".into(), redact_url),
                    if r.secret.is_some() { "set" } else { "none" },
                    r.keywords.join(", "),
                    humantime::format_duration(t.window),
                    t.rate_limit,
                    humantime::format_duration(t.rate_period),
                );
                // What the group would see, with this robot's templates and time zone.
                let link = c
                    .server
                    .public_url
                    .as_ref()
                    .map(|u| format!("{u}/v1/digests/1"));
                // In the robot's platform's dialect, with the people it mentions.
                let mentions = sluice::mention::mentions_for(
                    &r.mentions,
                    r.provider.as_str(),
                    &c.owners,
                    &samples,
                );
                let sample = sluice::provider::render(
                    &r.target(),
                    sluice::digest::DigestSpec {
                        robot: &r.name,
                        id: 1,
                        keyword: r.keywords.first().map(String::as_str),
                        link: link.as_deref(),
                        max_bytes: 0,
                        tz: &r.look.timezone,
                        catch_up: None,
                        templates: r.look.templates.as_deref(),
                    },
                    &samples,
                    &mentions,
                );
                println!(
                    "  sample digest ({} time, {}):",
                    r.look.timezone_name, sample.title
                );
                for line in sample.text.lines() {
                    println!("  | {line}");
                }
            }
            Ok(())
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match config {
        Some(path) => Config::load(&path)?,
        None => Config::builtin(),
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    sluice::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn connect(conn: &Conn) -> anyhow::Result<Client> {
    let server = match (&conn.server, &conn.config) {
        (Some(s), _) => s.clone(),
        (None, Some(path)) => Config::load(path)?.server.listen.to_string(),
        (None, None) => Config::builtin().server.listen.to_string(),
    };
    Ok(Client::new(&server, conn.token.clone()))
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn)?;
    let alerts = if let Some(source) = &args.json {
        let text = read_source(source)?;
        let mut alerts = client::parse_json_input(&text)?;
        if let Some(robot) = &args.robot {
            for a in &mut alerts {
                if let Some(m) = a.as_object_mut() {
                    m.entry("robot").or_insert_with(|| robot.clone().into());
                }
            }
        }
        alerts
    } else {
        let Some(title) = &args.title else {
            bail!("--title is required (or give --json)");
        };
        let text = match args.text.as_deref() {
            Some("-") => Some(read_source("-")?),
            other => other.map(str::to_string),
        };
        vec![client::alert_from_flags(
            args.robot.as_deref(),
            title,
            text.as_deref(),
            args.severity.as_deref(),
            args.status.as_deref(),
            &args.labels,
        )]
    };
    let n = alerts.len();
    // What the daemon could not take before goes first, in order.
    let spool = (!args.spool.no_spool)
        .then(|| Spool::new(args.spool.spool.clone().unwrap_or_else(Spool::default_dir)));
    let key = Spool::new_key();
    let unreachable = |e: &ClientError| matches!(e, ClientError::Unreachable { .. });
    if let Some(spool) = &spool {
        match spool.flush(&client).await {
            Ok(done) if done.sends > 0 => {
                eprintln!("sluice: delivered {} spooled alerts first", done.alerts);
            }
            Ok(_) => {}
            Err(e) if unreachable(&e) => return spool_and_say(spool, &key, &alerts, &e),
            Err(e) => return Err(e.into()),
        }
    }
    let ids = match client.send_keyed(alerts.clone(), Some(&key)).await {
        Ok(ids) => ids,
        Err(e) if unreachable(&e) && spool.is_some() => {
            return spool_and_say(spool.as_ref().expect("checked"), &key, &alerts, &e);
        }
        Err(e) => return Err(e.into()),
    };
    match ids.as_slice() {
        [one] => println!("queued 1 alert ({one})"),
        [first, .., last] => println!("queued {n} alerts ({first} … {last})"),
        [] => println!("queued {n} alerts"),
    }
    Ok(())
}

/// Keeps alerts for later and says so; exits 0, since nothing was lost.
fn spool_and_say(
    spool: &Spool,
    key: &str,
    alerts: &[serde_json::Value],
    why: &ClientError,
) -> anyhow::Result<()> {
    spool
        .push(key, alerts)
        .with_context(|| format!("{why}; and cannot spool to {}", spool.dir().display()))?;
    let waiting = spool.entries().map_or(0, |e| e.len());
    eprintln!(
        "sluice: {why}; spooled {} alert{} in {} ({waiting} send{} waiting): they go out with the next successful `sluice send` or `sluice spool flush`",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        spool.dir().display(),
        if waiting == 1 { "" } else { "s" },
    );
    Ok(())
}

fn read_source(source: &str) -> anyhow::Result<String> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))
    }
}
