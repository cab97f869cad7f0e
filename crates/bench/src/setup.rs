//! Set-up, never timed: accounts and logins for every simulated user, the catalogue
//! (items each seller lists, plus `--catalogue N` more), and what buyers need to know about
//! it, learnt the way a buyer would: by browsing each category.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_client::{BuyerClient, ClientError, SellerClient, pool_config};
use agora_domain::{ItemId, Page, UserId};
use anyhow::{Context, bail};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::workload::{Buyer, Catalogue, PASSWORD, Seller, User, random_item};

/// Where the frontends are, and the deadline on each call.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Seller server addresses, tried in turn.
    pub seller: Vec<String>,
    /// Buyer server addresses, tried in turn.
    pub buyer: Vec<String>,
    /// Deadline on each call (reconnecting included).
    pub timeout: Duration,
}

impl Targets {
    /// A client for user `i`: every seller server, starting with server `i mod N`, so the
    /// users spread over the frontends and each moves to the next when its own fails.
    fn seller_client(&self, i: usize) -> SellerClient {
        let addrs = rotated(&self.seller, i);
        SellerClient::with_config(pool_config(addrs, None, Some(self.timeout)))
    }

    /// A client for user `i`, as [`Targets::seller_client`] with the buyer servers.
    fn buyer_client(&self, i: usize) -> BuyerClient {
        let addrs = rotated(&self.buyer, i);
        BuyerClient::with_config(pool_config(addrs, None, Some(self.timeout)))
    }
}

/// `addrs` starting at `i mod len`, the ones before it moved to the end.
fn rotated(addrs: &[String], i: usize) -> Vec<String> {
    let mut addrs = addrs.to_vec();
    if !addrs.is_empty() {
        let n = addrs.len();
        addrs.rotate_left(i % n);
    }
    addrs
}

/// What to set up.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Simulated sellers.
    pub sellers: usize,
    /// Simulated buyers.
    pub buyers: usize,
    /// Items each simulated seller lists during set-up.
    pub items_per_seller: u32,
    /// Extra items to list through the API (0 when the catalogue was bulk-loaded).
    pub catalogue_via_api: u64,
    /// Categories items are listed in: 0 to this, exclusive.
    pub categories: u32,
    /// Categories to browse to learn the catalogue.
    pub browse_categories: u32,
    /// Seed of every random stream.
    pub seed: u64,
}

/// The users, ready to run, and what set-up learnt.
pub struct World {
    /// Sellers first, then buyers.
    pub users: Vec<User>,
    /// What buyers know about the catalogue.
    pub catalogue: Arc<Catalogue>,
}

/// Accounts and logins at once, at most this many: each costs an argon2 hash, milliseconds
/// of CPU and 7 MiB of the customer database's memory, so more at once would only inflate
/// its peak memory without making set-up faster.
const ACCOUNT_CONCURRENCY: usize = 4;
/// Registrations in flight while seeding the catalogue through the API.
const SEED_IN_FLIGHT: usize = 128;
/// Connections (and sessions) the catalogue is registered over.
const SEED_SELLERS: usize = 8;

/// A username prefix unique to this bench (usernames must be new on a running server).
fn nonce() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}", (nanos as u64 ^ u64::from(std::process::id()).rotate_left(40)) & 0xffff_ffff)
}

/// A seeded stream for user `index` of a role (0 sellers, 1 buyers, 2 set-up).
pub fn rng_for(seed: u64, role: u64, index: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (role << 56) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn setup_error(what: &str, e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("set-up: {what}: {e}")
}

/// Creates an account and logs in on a client of its own.
async fn seller_account(
    targets: &Targets,
    i: usize,
    username: String,
) -> anyhow::Result<(SellerClient, UserId)> {
    let client = targets.seller_client(i);
    let id = client
        .create_account(&username, PASSWORD, "Bench seller")
        .await
        .map_err(|e| setup_error("create seller account", e))?;
    client.login(&username, PASSWORD).await.map_err(|e| setup_error("seller login", e))?;
    Ok((client, id))
}

async fn buyer_account(
    targets: &Targets,
    i: usize,
    username: String,
) -> anyhow::Result<BuyerClient> {
    let client = targets.buyer_client(i);
    client
        .create_account(&username, PASSWORD, "Bench buyer")
        .await
        .map_err(|e| setup_error("create buyer account", e))?;
    client.login(&username, PASSWORD).await.map_err(|e| setup_error("buyer login", e))?;
    Ok(client)
}

/// Sets up `plan` against `targets`. `bar` shows progress.
pub async fn setup(targets: &Targets, plan: &Plan, bar: &ProgressBar) -> anyhow::Result<World> {
    let prefix = format!("b{}", nonce());
    let gate = Arc::new(Semaphore::new(ACCOUNT_CONCURRENCY));

    // Accounts and sessions: every user its own client, so its own connection.
    bar.set_message("accounts and logins");
    bar.set_length((plan.sellers + plan.buyers) as u64);
    let mut sellers = JoinSet::new();
    for i in 0..plan.sellers {
        let (targets, gate, username) = (targets.clone(), gate.clone(), format!("{prefix}s{i}"));
        sellers.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let (client, id) = seller_account(&targets, i, username.clone()).await?;
            anyhow::Ok((i, client, id, username))
        });
    }
    let mut buyers = JoinSet::new();
    for i in 0..plan.buyers {
        let (targets, gate, username) = (targets.clone(), gate.clone(), format!("{prefix}b{i}"));
        buyers.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let client = buyer_account(&targets, i, username.clone()).await?;
            anyhow::Ok((i, client, username))
        });
    }
    let mut seller_clients = Vec::with_capacity(plan.sellers);
    while let Some(done) = sellers.join_next().await {
        seller_clients.push(done??);
        bar.inc(1);
    }
    seller_clients.sort_by_key(|(i, ..)| *i);
    let mut buyer_clients = Vec::with_capacity(plan.buyers);
    while let Some(done) = buyers.join_next().await {
        buyer_clients.push(done??);
        bar.inc(1);
    }
    buyer_clients.sort_by_key(|(i, ..)| *i);

    // Each seller's own items, listed by the seller.
    bar.set_message("sellers' items");
    bar.set_position(0);
    bar.set_length(plan.sellers as u64 * u64::from(plan.items_per_seller));
    let mut listing = JoinSet::new();
    for (i, client, ..) in &seller_clients {
        let (client, i, plan) = (client.clone(), *i, plan.clone());
        listing.spawn(async move {
            let mut rng = rng_for(plan.seed, 2, i as u64);
            let mut items = Vec::with_capacity(plan.items_per_seller as usize);
            for n in 0..plan.items_per_seller {
                let item = random_item(&mut rng, u64::from(n), plan.categories);
                let id =
                    client.register_item(item).await.map_err(|e| setup_error("list item", e))?;
                items.push(id);
            }
            anyhow::Ok((i, items))
        });
    }
    let mut own_items: Vec<Vec<ItemId>> = vec![Vec::new(); plan.sellers];
    while let Some(done) = listing.join_next().await {
        let (i, items) = done??;
        bar.inc(items.len() as u64);
        own_items[i] = items;
    }

    if plan.catalogue_via_api > 0 {
        seed_catalogue(targets, plan, &prefix, bar).await?;
    }

    // Learn the catalogue as a buyer: browse each category, newest first.
    bar.set_message("browsing the catalogue");
    let mut catalogue = Catalogue {
        sellers: seller_clients.iter().map(|(_, _, id, _)| *id).collect(),
        ..Catalogue::default()
    };
    if let Some((_, browser, _)) = buyer_clients.first() {
        bar.set_position(0);
        bar.set_length(u64::from(plan.browse_categories));
        for category in 0..plan.browse_categories {
            let page = Page { offset: 0, limit: agora_domain::PAGE_MAX };
            let items = browser
                .search(category, Vec::new(), page)
                .await
                .map_err(|e| setup_error("browse the catalogue", e))?;
            bar.inc(1);
            if items.is_empty() {
                continue;
            }
            let mut words: Vec<String> = items.iter().flat_map(|i| i.keywords.clone()).collect();
            words.sort();
            words.dedup();
            for item in &items {
                catalogue.items.push(item.id);
                if !catalogue.sellers.contains(&item.seller_id) {
                    catalogue.sellers.push(item.seller_id);
                }
            }
            catalogue.categories.push((category, words));
        }
        if catalogue.items.is_empty() {
            bail!(
                "set-up: the catalogue is empty, so buyers have nothing to look at: \
                 list items with --items-per-seller or --catalogue"
            );
        }
    }

    let catalogue = Arc::new(catalogue);
    let mut users = Vec::with_capacity(plan.sellers + plan.buyers);
    for ((i, client, _, username), items) in seller_clients.into_iter().zip(own_items) {
        users.push(User::Seller(Box::new(Seller {
            client,
            username,
            items,
            categories: plan.categories,
            prefix: format!("{prefix}s{i}"),
            created: 0,
            rng: rng_for(plan.seed, 0, i as u64),
        })));
    }
    for (i, client, username) in buyer_clients {
        users.push(User::Buyer(Box::new(Buyer {
            client,
            username,
            catalogue: catalogue.clone(),
            cart: Vec::new(),
            saved: Vec::new(),
            prefix: format!("{prefix}b{i}"),
            created: 0,
            rng: rng_for(plan.seed, 1, i as u64),
        })));
    }
    Ok(World { users, catalogue })
}

/// Lists `plan.catalogue_via_api` items through the seller server, from a few sellers of
/// its own, many registrations in flight.
async fn seed_catalogue(
    targets: &Targets,
    plan: &Plan,
    prefix: &str,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    bar.set_message("catalogue (through the API)");
    bar.set_position(0);
    bar.set_length(plan.catalogue_via_api);
    let mut clients = Vec::with_capacity(SEED_SELLERS);
    for i in 0..SEED_SELLERS {
        clients.push(seller_account(targets, i, format!("{prefix}c{i}")).await?.0);
    }
    let gate = Arc::new(Semaphore::new(SEED_IN_FLIGHT));
    let mut rng = rng_for(plan.seed, 3, 0);
    let mut tasks = JoinSet::new();
    for n in 0..plan.catalogue_via_api {
        let permit = gate.clone().acquire_owned().await?;
        let client = clients[(n % SEED_SELLERS as u64) as usize].clone();
        let item = random_item(&mut rng, n, plan.categories);
        tasks.spawn(async move {
            let _permit = permit;
            client.register_item(item).await.map_err(|e| setup_error("seed the catalogue", e))
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
            bar.inc(1);
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
        bar.inc(1);
    }
    Ok(())
}

/// Says which seller id a bulk-loaded catalogue belongs to: a seller account made first on
/// a fresh customer database, so it owns the id the loader was given.
pub async fn catalogue_owner(targets: &Targets) -> anyhow::Result<UserId> {
    let (_, id) = seller_account(targets, 0, format!("b{}owner", nonce()))
        .await
        .context("create the catalogue's owner")?;
    Ok(id)
}
