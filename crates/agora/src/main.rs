//! `agora`: every component of the marketplace behind one binary. Thin glue only: parse
//! flags, set up logging, bind, and call the component's library.

/// mimalloc rather than glibc's allocator: under our servers' many small allocations glibc
/// took 7-11 % of a server's CPU (in the frontends `malloc_consolidate` alone 7.5 %); with
/// mimalloc scenario 2 does ~9 % more calls per second (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod layout;
mod ports;
mod servers;
mod spin;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Agora, an online marketplace built as a distributed system.
///
/// `agora up` runs the whole marketplace on this machine. Each server component can also
/// run alone, on any host: every address is a flag and an environment variable.
#[derive(Debug, Parser)]
#[command(name = "agora", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the customer database, product database, payments, seller server and buyer
    /// server on this machine, each as its own process, until Ctrl-C.
    Up(up::UpArgs),
    /// Run the customer database: accounts, sessions, carts, purchase history.
    CustomerDb(servers::CustomerDbArgs),
    /// Run the product database: items, quantities, feedback, search.
    ProductDb(servers::ProductDbArgs),
    /// Run the payments service: approves or declines card charges, keeps the ledger.
    Payments(servers::PaymentsArgs),
    /// Run the seller server (stateless frontend of the seller's interface).
    SellerServer(servers::SellerServerArgs),
    /// Run the buyer server (stateless frontend of the buyer's interface).
    BuyerServer(servers::BuyerServerArgs),
    /// The seller's client: one-shot commands, or an interactive shell without one.
    Seller(agora_cli::SellerArgs),
    /// The buyer's client: one-shot commands, or an interactive shell without one.
    Buyer(agora_cli::BuyerArgs),
    /// Measure response time and throughput of a running or spawned marketplace.
    Bench(agora_bench::BenchArgs),
    /// Make the cluster's credentials (mutual TLS between the components), for running
    /// them on separate hosts; `agora up` makes its own.
    Credentials(servers::CredentialsArgs),
    /// See how the replicated groups stand (`agora up --replicas N`, or replicas on their
    /// own hosts): members, leaders, terms, and each replica's lag.
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Seller(args) => agora_cli::run_seller(args),
        Command::Buyer(args) => agora_cli::run_buyer(args),
        Command::Up(args) => report(up::run(args)),
        Command::CustomerDb(args) => report(servers::customer_db(args)),
        Command::ProductDb(args) => report(servers::product_db(args)),
        Command::Payments(args) => report(servers::payments(args)),
        Command::SellerServer(args) => report(servers::seller_server(args)),
        Command::BuyerServer(args) => report(servers::buyer_server(args)),
        Command::Bench(args) => report(agora_bench::run(args)),
        Command::Credentials(args) => report(servers::credentials(args)),
        Command::Cluster(args) => report(cluster::run(args)),
    }
}

/// Prints an error with its chain of causes, ripgrep style.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::FAILURE
        }
    }
}
