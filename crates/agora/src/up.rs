//! `agora up`: the whole marketplace on one machine, each component its own process.
//!
//! Starts the databases and payments, learns their real addresses from their `listening on` line,
//! starts the frontends pointed at them (their HTTP APIs announce themselves on the line
//! after, `http listening on`), prints where everything is, and forwards each
//! child's log lines prefixed with its name. Ctrl-C or SIGTERM stops the frontends, then
//! the databases, by closing their standard input (so they also stop if `agora up` itself
//! is killed). If any component dies, the rest are stopped and `agora up` fails.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// `agora up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the databases' files (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Customer database listen address.
    #[arg(long, env = "AGORA_CUSTOMER_DB_LISTEN", default_value = "127.0.0.1:7401")]
    pub customer_db_listen: String,
    /// Product database listen address.
    #[arg(long, env = "AGORA_PRODUCT_DB_LISTEN", default_value = "127.0.0.1:7402")]
    pub product_db_listen: String,
    /// Payments service listen address.
    #[arg(long, env = "AGORA_PAYMENTS_LISTEN", default_value = "127.0.0.1:7405")]
    pub payments_listen: String,
    /// Chance (0 to 1) that payments approves a valid card.
    #[arg(long, env = "AGORA_APPROVE_PROBABILITY", default_value = "0.9")]
    pub approve_probability: String,
    /// Seller server listen address.
    #[arg(long, env = "AGORA_SELLER_LISTEN", default_value = "127.0.0.1:7403")]
    pub seller_listen: String,
    /// Buyer server listen address.
    #[arg(long, env = "AGORA_BUYER_LISTEN", default_value = "127.0.0.1:7404")]
    pub buyer_listen: String,
    /// Seller server HTTP/JSON API address, or `off`.
    #[arg(long, env = "AGORA_SELLER_HTTP_LISTEN", default_value = "127.0.0.1:8403")]
    pub seller_http_listen: String,
    /// Buyer server HTTP/JSON API address, or `off`.
    #[arg(long, env = "AGORA_BUYER_HTTP_LISTEN", default_value = "127.0.0.1:8404")]
    pub buyer_http_listen: String,
    /// A session ends after this long without activity (e.g. 300s, 5m).
    #[arg(long, env = "AGORA_SESSION_TIMEOUT", default_value = "5m")]
    pub session_timeout: String,
    /// What the components log (error, warn, info, debug, trace).
    #[arg(long, env = "AGORA_LOG", default_value = "info")]
    pub log: String,
    /// What an acknowledged write survives: `process` (kill -9 of a database; the
    /// default) or `machine` (also a power loss: every commit batch is fsynced).
    #[arg(long, env = "AGORA_DURABILITY", default_value = "process")]
    pub durability: String,
}

/// A running child: its name, the pipe whose closing stops it, and where it listens.
struct Component {
    name: &'static str,
    stdin: Option<ChildStdin>,
    addr: String,
    /// Where its HTTP API listens, for a frontend that has one.
    http: Option<String>,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(args))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    agora_store::private_dir(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.display().to_string();
    // Zero configuration: the cluster's credentials live with its data, made on first use.
    let credentials = args.data_dir.join("credentials");
    agora_proto::trust::create(&credentials)?;
    let credentials = credentials.display().to_string();
    let (exited_tx, mut exited) = mpsc::channel::<(&'static str, String)>(8);

    let mut started: Vec<Component> = Vec::new();
    let result = async {
        let product = start(
            &exe,
            "product-db",
            &[
                "--listen",
                &args.product_db_listen,
                "--data-dir",
                &data_dir,
                "--durability",
                &args.durability,
                "--log",
                &args.log,
            ],
            &exited_tx,
        )
        .await?;
        let product_addr = product.addr.clone();
        started.push(product);
        let payments = start(
            &exe,
            "payments",
            &[
                "--listen",
                &args.payments_listen,
                "--data-dir",
                &data_dir,
                "--durability",
                &args.durability,
                "--log",
                &args.log,
                "--approve-probability",
                &args.approve_probability,
            ],
            &exited_tx,
        )
        .await?;
        let payments_addr = payments.addr.clone();
        started.push(payments);
        // The customer database coordinates purchases, so it needs the other two.
        let customer = start(
            &exe,
            "customer-db",
            &[
                "--listen",
                &args.customer_db_listen,
                "--data-dir",
                &data_dir,
                "--durability",
                &args.durability,
                "--session-timeout",
                &args.session_timeout,
                "--log",
                &args.log,
                "--product-db",
                &product_addr,
                "--payments",
                &payments_addr,
            ],
            &exited_tx,
        )
        .await?;
        let customer_addr = customer.addr.clone();
        started.push(customer);
        for (name, listen, http) in [
            ("seller-server", &args.seller_listen, &args.seller_http_listen),
            ("buyer-server", &args.buyer_listen, &args.buyer_http_listen),
        ] {
            let http = if crate::servers::http_off(http) { "off" } else { http.as_str() };
            let frontend = start(
                &exe,
                name,
                &[
                    "--listen",
                    listen,
                    "--http-listen",
                    http,
                    "--customer-db",
                    &customer_addr,
                    "--product-db",
                    &product_addr,
                    "--credentials",
                    &credentials,
                    "--log",
                    &args.log,
                ],
                &exited_tx,
            )
            .await?;
            started.push(frontend);
        }
        anyhow::Ok(())
    }
    .await;

    let outcome = match result {
        Err(e) => Err(e),
        Ok(()) => {
            print_banner(&started, &data_dir);
            tokio::select! {
                _ = stop_signal() => {
                    eprintln!("agora: stopping");
                    Ok(())
                }
                Some((name, status)) = exited.recv() => {
                    Err(anyhow::anyhow!("{name} exited unexpectedly ({status}); stopping the rest"))
                }
            }
        }
    };
    // Frontends first, so no request is cut off by a database going away under it.
    for component in started.iter_mut().rev() {
        component.stdin.take();
        let _ = tokio::time::timeout(Duration::from_secs(10), exited.recv()).await;
    }
    outcome
}

/// Starts `agora <name> <args> --supervised` and waits for its `listening on` line (and,
/// when `args` turn an HTTP API on, the `http listening on` line after it).
async fn start(
    exe: &std::path::Path,
    name: &'static str,
    args: &[&str],
    exited: &mpsc::Sender<(&'static str, String)>,
) -> anyhow::Result<Component> {
    let http = args.windows(2).any(|w| w[0] == "--http-listen" && !crate::servers::http_off(w[1]));
    let mut child: Child = Command::new(exe)
        .arg(name)
        .args(args)
        .arg("--supervised")
        .env("AGORA_LOG_COLOR", if std::io::stderr().is_terminal() { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward(name, BufReader::new(stderr).lines()));
    }
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let addr = match first {
        Ok(Ok(Some(line))) => match line.strip_prefix("listening on ") {
            Some(addr) => addr.trim().to_owned(),
            None => bail!("{name} said {line:?} instead of where it listens"),
        },
        Ok(_) => {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            bail!("{name} failed to start ({status}); its log is above")
        }
        Err(_) => bail!("{name} did not start within 30 s"),
    };
    let http = match http {
        false => None,
        true => match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => match line.strip_prefix("http listening on ") {
                Some(addr) => Some(addr.trim().to_owned()),
                None => bail!("{name} said {line:?} instead of where its HTTP API listens"),
            },
            Ok(_) => {
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                bail!("{name} failed to start its HTTP API ({status}); its log is above")
            }
            Err(_) => bail!("{name} did not start its HTTP API within 30 s"),
        },
    };
    tokio::spawn(forward(name, lines));
    let exited = exited.clone();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let _ = exited.send((name, status)).await;
    });
    Ok(Component { name, stdin, addr, http })
}

/// Copies a child's output lines to our stderr, prefixed with its name.
async fn forward<R: tokio::io::AsyncBufRead + Unpin>(
    name: &'static str,
    mut lines: tokio::io::Lines<R>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{name:>13} | {line}");
    }
}

fn print_banner(started: &[Component], data_dir: &str) {
    let addr = |name: &str| {
        started.iter().find(|c| c.name == name).map(|c| c.addr.as_str()).unwrap_or("?")
    };
    println!("Agora is up. Data in {data_dir}/");
    for c in started {
        match &c.http {
            Some(http) => println!("  {:<14} {:<21} http://{http}", c.name, c.addr),
            None => println!("  {:<14} {}", c.name, c.addr),
        }
    }
    println!();
    println!(
        "Sellers:  agora seller --server {}   (interactive shell; `help` lists commands)",
        addr("seller-server")
    );
    println!("Buyers:   agora buyer --server {}", addr("buyer-server"));
    println!("Scripts:  agora seller create-account --username ann --password 'long enough'");
    println!("          agora seller login --username ann --password 'long enough'");
    let http = |name: &str| started.iter().find(|c| c.name == name).and_then(|c| c.http.clone());
    if let Some(buyer) = http("buyer-server") {
        println!(
            "HTTP:     curl --json '{{\"username\":\"bea\",\"password\":\"long enough\"}}' http://{buyer}/v1/buyers"
        );
        println!("          API docs at http://{buyer}/docs and /openapi.json (docs/http.md)");
    }
    if let Some(seller) = http("seller-server") {
        println!("          seller API at http://{seller}/docs");
    }
    println!();
    println!("Ctrl-C stops everything.");
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
