//! `agora cluster`: how each replicated group stands (`status`), its members changed
//! (`add`, `remove`) and its leadership handed over (`transfer-leader`), asked of the
//! replicas with the cluster's admin credentials. The replicas' addresses come from the flags, or from
//! the map `agora up --replicas` writes into its data directory (`cluster.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_proto::{Component, ErrorCode, Trust};
use agora_replication::Status;
use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Cell, Table, presets};
use serde::{Deserialize, Serialize};

/// The file `agora up --replicas` writes: each group's replicas, name and address.
pub const MAP_FILE: &str = "cluster.json";

/// The groups, in the order they are shown.
const GROUPS: [Component; 3] = [Component::CustomerDb, Component::ProductDb, Component::Payments];

/// Each group's replicas: group name → (replica name, address), in node order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// By group name (`customer-db`, ...).
    pub groups: BTreeMap<String, Vec<Replica>>,
}

/// One replica on the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// `product-db-2`.
    pub name: String,
    /// Where it listens.
    pub addr: String,
}

impl ClusterMap {
    /// Writes the map to `DATA_DIR/cluster.json`, readable by its owner only, like the
    /// rest of the data directory.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(MAP_FILE);
        let json = serde_json::to_string_pretty(self).context("cannot encode the cluster map")?;
        agora_store::write_private(&path, (json + "\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(data_dir: &Path) -> anyhow::Result<ClusterMap> {
        let path = data_dir.join(MAP_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no cluster map at {} (agora up --replicas writes one): name the replicas with \
                 --customer-db, --product-db and --payments",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a cluster map", path.display()))
    }
}

/// `agora cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
}

/// What `agora cluster` can do.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterAction {
    /// Show each replicated group: its members, which leads, the term, each replica's last
    /// log index, applied index and lag behind the leader, and which replicas do not
    /// answer. Every replica is asked, with the cluster's admin credentials; one that
    /// refuses them is shown as refused, with what it said (and the command fails when no
    /// replica answers).
    Status(StatusArgs),
    /// Add a replica to a group: make its own certificate (`agora credentials issue
    /// --component product-db --node-id 4`, where the cluster's ca.key is), then start it,
    /// on an empty data directory with the cluster's credentials, its --node-id, and
    /// --peers listing the group's replicas and itself (`agora product-db --node-id 4
    /// --peers 2=A:7402,3=B:7402,4=C:7402 ...`: it then waits to be added instead of
    /// starting a group of its own); it joins as a learner, catches up from the leader's
    /// log or a snapshot, and then becomes a voter.
    /// How a dead machine is replaced by a new one.
    Add(ChangeArgs),
    /// Take a replica out of a group (a dead one, before it is replaced, or one to retire);
    /// the others go on as a smaller group, and a running replica taken out stops by
    /// itself. Refused when the voters left would have no majority that answers (start
    /// the missing replicas first, or --force).
    Remove(ChangeArgs),
    /// Hand a group's leadership to another replica (--to NODE_ID, or the one whose log is
    /// the most up to date), and wait until it leads: before maintenance on the leader's
    /// machine, so that no call waits for an election. A leader stopped with Ctrl-C or
    /// SIGTERM does this by itself.
    TransferLeader(TransferArgs),
    /// Record that a replica now listens at another address (its machine or port
    /// changed; start it there on its own data directory first). Every replica then dials
    /// it there, and clients are sent there when it leads.
    SetAddress(ChangeArgs),
}

/// `agora cluster transfer-leader`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The group: customer-db, product-db or payments.
    #[arg(long, value_parser = ["customer-db", "product-db", "payments"])]
    pub group: String,
    /// The node id of the replica to take over (a voter); without it, the voter whose log
    /// is the most up to date.
    #[arg(long)]
    pub to: Option<u64>,
    #[command(flatten)]
    pub cluster: Where,
}

/// `agora cluster add`, `remove` and `set-address`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The group: customer-db, product-db or payments.
    #[arg(long, value_parser = ["customer-db", "product-db", "payments"])]
    pub group: String,
    /// The replica's node id.
    #[arg(long)]
    pub node_id: u64,
    /// Where the replica listens (host:port); `add` and `set-address` only.
    #[arg(long)]
    pub addr: Option<String>,
    /// How long the new replica may take to catch up before `add` gives up (it stays a
    /// learner; run `add` again to finish).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub catch_up: Duration,
    /// `add` and `remove`: make the change even when the voters before or after it have no
    /// majority that answers the leader now. Such a change cannot commit until enough of
    /// them are back, and until then the group takes no write at all (purchases answer
    /// `purchase_pending`, listings `timeout`); without --force it is refused, and nothing
    /// changes.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub cluster: Where,
}

/// Where `agora cluster` finds the replicas and the admin's credentials.
#[derive(Debug, Args)]
pub struct Where {
    /// Where `agora up` keeps its data: the cluster map (cluster.json) and the
    /// credentials are read from there unless given.
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Directory of the cluster's credentials (the admin's certificate and key).
    /// [default: DATA_DIR/credentials]
    #[arg(long, env = "AGORA_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// The customer database's replicas, comma-separated (instead of the map).
    #[arg(long, value_delimiter = ',')]
    pub customer_db: Vec<String>,
    /// The product database's replicas, comma-separated (instead of the map).
    #[arg(long, value_delimiter = ',')]
    pub product_db: Vec<String>,
    /// The payments service's replicas, comma-separated (instead of the map).
    #[arg(long, value_delimiter = ',')]
    pub payments: Vec<String>,
}

/// `agora cluster status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: Where,
    /// Print JSON: per group, each replica's name, address and status (or error).
    #[arg(long)]
    pub json: bool,
}

/// What one replica said, or why it said nothing.
#[derive(Debug, Serialize)]
struct Answer {
    name: String,
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The error's code: `forbidden` when the replica refused these credentials,
    /// `unavailable` when it could not be reached.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "code_name")]
    code: Option<ErrorCode>,
}

fn code_name<S: serde::Serializer>(code: &Option<ErrorCode>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(code) => s.serialize_str(code.as_str()),
        None => s.serialize_none(),
    }
}

/// Whether `error` is the replica's own refusal of the caller (these credentials, or
/// this request), as opposed to a replica that could not be reached or is electing a
/// leader. Waiting does not change a refusal, and it must be shown as the replica said it.
fn is_refusal(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::Forbidden | ErrorCode::BadRequest | ErrorCode::Protocol)
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.action {
        ClusterAction::Status(args) => runtime.block_on(status(args)),
        ClusterAction::Add(args) => runtime.block_on(change(args, true)),
        ClusterAction::Remove(args) => runtime.block_on(change(args, false)),
        ClusterAction::TransferLeader(args) => runtime.block_on(transfer_leader(args)),
        ClusterAction::SetAddress(args) => runtime.block_on(set_address(args)),
    }
}

/// The replicas' map: from the flags if any name replicas, else from the data directory.
/// The second value says whether it came from the file (and so should follow a change).
fn map_of(args: &Where) -> anyhow::Result<(ClusterMap, bool)> {
    let given = [&args.customer_db, &args.product_db, &args.payments];
    if given.iter().all(|addrs| addrs.is_empty()) {
        return Ok((ClusterMap::read(&args.data_dir)?, true));
    }
    let mut map = ClusterMap::default();
    for (group, addrs) in GROUPS.iter().zip(given) {
        let replicas = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| Replica { name: format!("{group}-{}", i + 1), addr: addr.clone() })
            .collect();
        map.groups.insert(group.name().to_owned(), replicas);
    }
    Ok((map, false))
}

fn admin(args: &Where) -> anyhow::Result<Trust> {
    let credentials = args.credentials.clone().unwrap_or_else(|| args.data_dir.join("credentials"));
    Ok(Trust::load(&credentials, Component::Admin)?)
}

/// The address of `group`'s leader: the replica a majority names in the newest term
/// (`agora_replication::agreed_leader`). Waits, up to ten seconds, while the group elects
/// one (its replicas may still name a dead one, and a restarted one may name itself).
pub async fn leader_of(
    group: Component,
    map: &ClusterMap,
    trust: &Trust,
) -> anyhow::Result<String> {
    let replicas = map.groups.get(group.name()).map(Vec::as_slice).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut statuses = Vec::new();
        let mut unreachable = Vec::new();
        for replica in replicas {
            match agora_replication::status_of(group, &replica.addr, trust, TIMEOUT).await {
                Ok(status) => statuses.push(Some(status)),
                // No election and no retry makes a replica accept what it refused.
                Err(e) if is_refusal(e.code) => {
                    bail!("{} ({}) refused: {}: {e}", replica.name, replica.addr, e.code)
                }
                Err(e) => {
                    unreachable.push(format!("{}: {e}", replica.name));
                    statuses.push(None);
                }
            }
        }
        if let Some(at) = agora_replication::agreed_leader(&statuses) {
            return Ok(replicas[at].addr.clone());
        }
        if tokio::time::Instant::now() > deadline {
            let why = match unreachable.is_empty() {
                true => String::new(),
                false => format!(" ({})", unreachable.join("; ")),
            };
            bail!("no replica of {group} leads: is a majority of it running?{why}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn change(args: ChangeArgs, add: bool) -> anyhow::Result<()> {
    let group = Component::from_name(&args.group).context("not a group")?;
    let (mut map, from_file) = map_of(&args.cluster)?;
    let trust = admin(&args.cluster)?;
    let leader = leader_of(group, &map, &trust).await?;
    let status = agora_replication::status_of(group, &leader, &trust, TIMEOUT).await?;
    let mut voters: std::collections::BTreeSet<u64> =
        status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let replicas = map.groups.entry(group.name().to_owned()).or_default();
    let name = format!("{group}-{}", args.node_id);
    if add {
        let Some(addr) = args.addr.clone() else { bail!("--addr: where the new replica listens") };
        println!("adding {name} at {addr} as a learner; waiting for it to catch up");
        agora_replication::add_learner_at(
            group,
            &leader,
            &trust,
            args.node_id,
            &addr,
            args.catch_up,
        )
        .await
        .with_context(|| format!("{name} did not join as a learner"))?;
        voters.insert(args.node_id);
        replicas.retain(|r| r.name != name);
        replicas.push(Replica { name: name.clone(), addr });
    } else {
        if !voters.remove(&args.node_id) {
            bail!("node {} is not a voter of {group}", args.node_id);
        }
        if voters.is_empty() {
            bail!("{group} would have no voters left");
        }
        replicas.retain(|r| r.name != name);
    }
    let before: std::collections::BTreeSet<u64> =
        status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    if let Some(why) = cannot_commit(&status, &before, &voters)
        && !args.force
    {
        bail!(
            "refusing to {} node {} {} {group}: {why}, so the change could not commit and \
             {group} would take no write until enough of them are back. Start the missing \
             replicas first, or pass --force to make the change anyway; nothing was changed",
            if add { "add" } else { "remove" },
            args.node_id,
            if add { "to" } else { "from" },
        );
    }
    agora_replication::set_voters_at(group, &leader, &trust, voters.clone(), args.catch_up)
        .await
        .with_context(|| format!("cannot change {group}'s voters"))?;
    let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
    println!("{group}: voters now {}", ids.join(", "));
    if from_file {
        map.write(&args.cluster.data_dir)?;
    }
    Ok(())
}

/// Why a change of the voters from `before` to `after` could not commit now, as the
/// leader whose `status` this is sees its members: Raft commits a membership change only
/// with a majority of the voters before it and a majority of those after it (openraft's
/// joint consensus), and a member that does not answer the leader counts for neither.
fn cannot_commit(
    status: &agora_replication::Status,
    before: &std::collections::BTreeSet<u64>,
    after: &std::collections::BTreeSet<u64>,
) -> Option<String> {
    let ids = |set: &std::collections::BTreeSet<u64>| {
        set.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    };
    for (which, voters) in [("before", before), ("after", after)] {
        let down: std::collections::BTreeSet<u64> =
            voters.iter().copied().filter(|id| status.unreachable.contains(id)).collect();
        let answering = voters.len() - down.len();
        if answering * 2 <= voters.len() {
            return Some(format!(
                "of the voters {which} it ({}), only {answering} answer the leader (not {})",
                ids(voters),
                ids(&down)
            ));
        }
    }
    None
}

async fn set_address(args: ChangeArgs) -> anyhow::Result<()> {
    let group = Component::from_name(&args.group).context("not a group")?;
    let Some(addr) = args.addr.clone() else { bail!("--addr: where the replica listens now") };
    let (mut map, from_file) = map_of(&args.cluster)?;
    let trust = admin(&args.cluster)?;
    let leader = leader_of(group, &map, &trust).await?;
    agora_replication::set_address_at(group, &leader, &trust, args.node_id, &addr, TIMEOUT * 4)
        .await
        .with_context(|| format!("{group} did not record node {}'s new address", args.node_id))?;
    let name = format!("{group}-{}", args.node_id);
    if let Some(replica) =
        map.groups.get_mut(group.name()).and_then(|r| r.iter_mut().find(|r| r.name == name))
    {
        replica.addr.clone_from(&addr);
    }
    if from_file {
        map.write(&args.cluster.data_dir)?;
    }
    println!("{group}: node {} now at {addr}", args.node_id);
    Ok(())
}

async fn transfer_leader(args: TransferArgs) -> anyhow::Result<()> {
    let group = Component::from_name(&args.group).context("not a group")?;
    let (map, _) = map_of(&args.cluster)?;
    let trust = admin(&args.cluster)?;
    let leader = leader_of(group, &map, &trust).await?;
    // The leader waits up to 5 s for the new one; the answer may take a little longer.
    let to = agora_replication::transfer_leader_at(group, &leader, &trust, args.to, TIMEOUT * 4)
        .await
        .with_context(|| format!("{group}'s leadership was not handed over"))?;
    let name = map
        .groups
        .get(group.name())
        .and_then(|replicas| replicas.iter().find(|r| r.name == format!("{group}-{to}")))
        .map_or_else(|| format!("node {to}"), |r| r.name.clone());
    println!("{group}: {name} leads now");
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (map, _) = map_of(&args.cluster)?;
    let trust = admin(&args.cluster)?;
    let mut report: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    for group in GROUPS {
        let Some(replicas) = map.groups.get(group.name()).filter(|r| !r.is_empty()) else {
            continue;
        };
        let mut answers = Vec::new();
        for replica in replicas {
            let asked = agora_replication::status_of(group, &replica.addr, &trust, TIMEOUT).await;
            answers.push(Answer {
                name: replica.name.clone(),
                addr: replica.addr.clone(),
                error: asked.as_ref().err().map(ToString::to_string),
                code: asked.as_ref().err().map(|e| e.code),
                status: asked.ok(),
            });
        }
        report.insert(group.name().to_owned(), answers);
    }
    if report.is_empty() {
        bail!("no replicas to ask: the map and the flags name none");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("cannot encode")?);
    } else {
        for group in GROUPS {
            if let Some(answers) = report.get(group.name()) {
                print_group(group, answers);
            }
        }
    }
    // Not one replica answered: say why, as the first one said it, and fail.
    let answers = report.values().flatten();
    if let Some(first) = answers.clone().find(|a| a.status.is_none())
        && answers.clone().all(|a| a.status.is_none())
    {
        let error = first.error.as_deref().unwrap_or("no answer");
        match first.code {
            Some(code) if is_refusal(code) => {
                bail!("{} ({}) refused: {code}: {error}", first.name, first.addr)
            }
            _ => bail!("no replica answers; {} ({}): {error}", first.name, first.addr),
        }
    }
    Ok(())
}

/// How long one replica may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

fn print_group(group: Component, answers: &[Answer]) {
    let statuses: Vec<&Status> = answers.iter().filter_map(|a| a.status.as_ref()).collect();
    // The leader as the replicas of the highest term know it.
    let latest = statuses.iter().max_by_key(|s| s.term);
    let leader = latest.and_then(|s| s.leader);
    let leader_log =
        statuses.iter().find(|s| Some(s.node_id) == leader).and_then(|s| s.last_log_index);
    let leader_name = answers
        .iter()
        .find(|a| a.status.as_ref().is_some_and(|s| Some(s.node_id) == leader))
        .map_or("none known".to_owned(), |a| a.name.clone());
    println!(
        "{group}: leader {leader_name}, term {}, {} of {} replicas answer",
        latest.map_or(0, |s| s.term),
        statuses.len(),
        answers.len()
    );
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    table.set_header(vec!["replica", "address", "node", "role", "last log", "applied", "lag"]);
    for answer in answers {
        let row = match &answer.status {
            Some(s) => {
                let role = if Some(s.node_id) == leader { "leader" } else { "follower" };
                let lag = match (leader_log, s.applied_index) {
                    (Some(top), Some(applied)) => top.saturating_sub(applied).to_string(),
                    (Some(top), None) => top.to_string(),
                    _ => "-".to_owned(),
                };
                let index = |i: Option<u64>| i.map_or("-".to_owned(), |i| i.to_string());
                vec![
                    answer.name.clone(),
                    answer.addr.clone(),
                    s.node_id.to_string(),
                    role.to_owned(),
                    index(s.last_log_index),
                    index(s.applied_index),
                    lag,
                ]
            }
            // Why is printed below the table; the table stays narrow.
            None => vec![
                answer.name.clone(),
                answer.addr.clone(),
                "-".into(),
                match answer.code {
                    Some(code) if is_refusal(code) => "refused".into(),
                    _ => "unreachable".into(),
                },
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        table.add_row(row.into_iter().map(Cell::new).collect::<Vec<_>>());
    }
    println!("{table}");
    for answer in answers {
        if let (Some(error), Some(code)) = (&answer.error, answer.code) {
            println!("{}: {code}: {error}", answer.name);
        }
    }
    println!();
}
