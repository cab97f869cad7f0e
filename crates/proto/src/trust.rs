//! Trust between Agora's components: who is calling, proven by the transport, and the
//! transport seam every connection goes through.
//!
//! Internal connections (frontend → databases, customer-db → product-db and payments)
//! are mutual TLS 1.3 under one cluster CA. Each component holds a certificate for its
//! [`Component`], named `<component>.agora` (for example `product-db.agora`); a server learns its
//! caller's component from the certificate the caller presented, and a caller checks that the
//! server's certificate names the service it meant to reach, whatever its address. The
//! public doors (the frontends' TCP and HTTP ports) are [`Acceptor::Open`]: anyone may
//! connect, and users are authenticated by session instead.
//!
//! [`create`] makes a cluster's credentials (what `agora up` and `agora credentials
//! create` run); [`Trust::load`] reads one component's share of them. docs/protocol.md
//! ("Trust") is the contract; each service's rule of who may send what is
//! [`crate::Service::authorize`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ServiceId;

/// A byte stream a connection can run over: a TCP socket, TLS over one, or a test's own.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A connection's stream once the transport has set it up.
pub type BoxStream = Box<dyn Stream>;

/// What a component is to the others. Each has its own certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The customer database.
    CustomerDb,
    /// The product database.
    ProductDb,
    /// The payments service.
    Payments,
    /// The seller server.
    SellerServer,
    /// The buyer server.
    BuyerServer,
    /// An operator's tool (health checks, cluster status): may only ping.
    Admin,
}

impl Component {
    /// Every component, in the order `create` mints their certificates.
    pub const ALL: [Component; 6] = [
        Component::CustomerDb,
        Component::ProductDb,
        Component::Payments,
        Component::SellerServer,
        Component::BuyerServer,
        Component::Admin,
    ];

    /// The components that keep a replicated database, each replica with its own
    /// certificate ([`issue`]).
    pub const DATABASES: [Component; 3] =
        [Component::CustomerDb, Component::ProductDb, Component::Payments];

    /// The component's name, as in `agora <name>` and its certificate's file names.
    pub fn name(self) -> &'static str {
        match self {
            Component::CustomerDb => "customer-db",
            Component::ProductDb => "product-db",
            Component::Payments => "payments",
            Component::SellerServer => "seller-server",
            Component::BuyerServer => "buyer-server",
            Component::Admin => "admin",
        }
    }

    /// The component that serves `service`; `None` for [`ServiceId::Replication`], which
    /// every database serves (its connections name the group's component instead, see
    /// [`Connector::connect_to`]).
    pub fn serving(service: ServiceId) -> Option<Component> {
        match service {
            ServiceId::CustomerDb => Some(Component::CustomerDb),
            ServiceId::ProductDb => Some(Component::ProductDb),
            ServiceId::Payments => Some(Component::Payments),
            ServiceId::Seller => Some(Component::SellerServer),
            ServiceId::Buyer => Some(Component::BuyerServer),
            ServiceId::Replication => None,
        }
    }

    /// The component named `name` (as [`Component::name`] writes it), if any.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The name its certificate carries (as a DNS subject alternative name).
    fn subject(self) -> String {
        format!("{}.agora", self.name())
    }

    /// The name a replica's certificate carries besides [`Component::subject`]: which
    /// node of the component's groups it is.
    fn replica_subject(self, node_id: u64) -> String {
        format!("replica-{node_id}.{}", self.subject())
    }

    fn is_frontend(self) -> bool {
        matches!(self, Component::SellerServer | Component::BuyerServer)
    }

    /// Whether the component keeps a replicated database (and so has a certificate per
    /// replica).
    pub fn is_database(self) -> bool {
        Component::DATABASES.contains(&self)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is on the other end of a connection, as its transport proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone: a connection to a public door, with no certificate.
    Public,
    /// One of the cluster's components, by the certificate it presented: one without a
    /// replica's identity (a frontend, the admin; a database's shared certificate of
    /// releases before per-replica certificates).
    Node(Component),
    /// One replica of a database's group, by its own certificate: the component and the
    /// replica's node id, both proven by the certificate. Only such a caller may send its
    /// group's Raft messages, and only in its own name.
    Replica(Component, u64),
}

impl Caller {
    /// Whether the caller is one of `components`.
    pub fn is(self, components: &[Component]) -> bool {
        self.component().is_some_and(|component| components.contains(&component))
    }

    /// Whether the caller is the seller or the buyer server.
    pub fn is_frontend(self) -> bool {
        self.component().is_some_and(Component::is_frontend)
    }

    /// Whether the caller is any of the cluster's components.
    pub fn is_node(self) -> bool {
        self.component().is_some()
    }

    /// The component the caller's certificate names, if it presented one.
    pub fn component(self) -> Option<Component> {
        match self {
            Caller::Public => None,
            Caller::Node(component) | Caller::Replica(component, _) => Some(component),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Public => f.write_str("a caller without the cluster's credentials"),
            Caller::Node(component) => write!(f, "{component}"),
            Caller::Replica(component, node_id) => write!(f, "{component} node {node_id}"),
        }
    }
}

/// Setting up or checking credentials failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// This component's share of the credentials is not there.
    #[error(
        "no {component} credentials in {dir} (missing {file}): `agora up` creates them under its \
         data directory; for components on separate hosts run `agora credentials create \
         --dir DIR` once and copy ca.crt, {component}.crt and {component}.key to this host, then pass \
         --credentials DIR (or AGORA_CREDENTIALS)"
    )]
    Missing {
        /// The directory searched.
        dir: PathBuf,
        /// The file not found.
        file: String,
        /// Whose credentials.
        component: Component,
    },
    /// A replica's own certificate and key are not there.
    #[error(
        "no credentials of {component} node {node_id} in {dir} (missing {file}): `agora up` \
         makes them; for a replica on a host of its own run `agora credentials issue --dir DIR \
         --component {component} --node-id {node_id}` where the cluster's ca.key is, copy \
         ca.crt, {component}-{node_id}.crt and {component}-{node_id}.key to this host, and \
         pass --credentials DIR (or AGORA_CREDENTIALS)"
    )]
    MissingReplica {
        /// The directory searched.
        dir: PathBuf,
        /// The file not found.
        file: String,
        /// The replica's component.
        component: Component,
        /// The replica's node id.
        node_id: u64,
    },
    /// A replica's certificate names another node, or none.
    #[error(
        "{path} is not the certificate of {component} node {node_id} (it proves {proves}): \
         every replica needs its own, made by `agora credentials issue`"
    )]
    NotThisReplica {
        /// The certificate.
        path: PathBuf,
        /// The replica it should prove.
        component: Component,
        /// Its node id.
        node_id: u64,
        /// What it proves instead.
        proves: String,
    },
    /// Some files of a cluster's credentials exist and others do not.
    #[error(
        "{dir} holds part of a cluster's credentials ({found} but not {missing}): restore \
         the missing files, or move the directory away to make a new cluster's"
    )]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// A file that is there.
        found: String,
        /// A file that is not.
        missing: String,
    },
    /// A file is not the PEM it should be.
    #[error("{path} is not a valid PEM {what}: {reason}")]
    Pem {
        /// Which file.
        path: PathBuf,
        /// Certificate or key.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("cannot use the credentials in {dir}: {source}")]
    Tls {
        /// The directory.
        dir: PathBuf,
        /// rustls's complaint.
        source: rustls::Error,
    },
    /// A replica's certificate was asked for what has none.
    #[error("{0}")]
    NotAReplica(String),
    /// A replica's certificate was asked for where the cluster CA's key is not.
    #[error(
        "{dir} has no ca.key to sign a replica's certificate with: run `agora credentials \
         issue` on the directory `agora credentials create` made (or `agora up`'s \
         DATA_DIR/credentials)"
    )]
    NoAuthority {
        /// The directory.
        dir: PathBuf,
    },
    /// Making certificates failed.
    #[error("cannot make certificates: {0}")]
    Mint(#[from] rcgen::Error),
}

/// One component's credentials, ready to accept and make connections.
#[derive(Clone)]
pub struct Trust {
    component: Component,
    /// The replica's node id, for a database replica's own certificate.
    replica: Option<u64>,
    /// SHA-256 of the cluster CA's certificate, in hex: which cluster these are from.
    fingerprint: String,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    /// SHA-256 of a label and the private key: the root of [`Trust::secret`].
    secret_root: [u8; 32],
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust").field("component", &self.component).finish_non_exhaustive()
    }
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

fn cert_file(component: Component) -> String {
    format!("{}.crt", component.name())
}

fn key_file(component: Component) -> String {
    format!("{}.key", component.name())
}

fn replica_cert_file(component: Component, node_id: u64) -> String {
    format!("{}-{node_id}.crt", component.name())
}

fn replica_key_file(component: Component, node_id: u64) -> String {
    format!("{}-{node_id}.key", component.name())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Trust {
    /// Reads `component`'s certificate and key and the cluster CA from `dir`: a
    /// frontend's or the admin's. A database replica has its own ([`Trust::load_replica`]).
    pub fn load(dir: &Path, component: Component) -> Result<Trust, TrustError> {
        for file in [CA_CERT.to_owned(), cert_file(component), key_file(component)] {
            if !dir.join(&file).exists() {
                return Err(TrustError::Missing { dir: dir.to_owned(), file, component });
            }
        }
        Trust::read(dir, component, None, &cert_file(component), &key_file(component))
    }

    /// Reads the certificate and key of replica `node_id` of `component`'s groups
    /// (`<component>-<node_id>.crt`, made by [`issue`]) and the cluster CA from `dir`, and
    /// checks that the certificate proves that replica.
    pub fn load_replica(
        dir: &Path,
        component: Component,
        node_id: u64,
    ) -> Result<Trust, TrustError> {
        let (cert, key) =
            (replica_cert_file(component, node_id), replica_key_file(component, node_id));
        for file in [CA_CERT.to_owned(), cert.clone(), key.clone()] {
            if !dir.join(&file).exists() {
                return Err(TrustError::MissingReplica {
                    dir: dir.to_owned(),
                    file,
                    component,
                    node_id,
                });
            }
        }
        Trust::read(dir, component, Some(node_id), &cert, &key)
    }

    fn read(
        dir: &Path,
        component: Component,
        replica: Option<u64>,
        cert_file: &str,
        key_file: &str,
    ) -> Result<Trust, TrustError> {
        let ca = read_certs(&dir.join(CA_CERT))?;
        let cert_path = dir.join(cert_file);
        let chain = read_certs(&cert_path)?;
        // A replica must be the one node it starts as (its peers would refuse it anyway,
        // with less to go on). Another component's certificate under this one's name is
        // left for the server to refuse, which says so on both sides.
        if let Some(node_id) = replica {
            let proves = chain.first().and_then(identity_of);
            if proves != Some(Caller::Replica(component, node_id)) {
                let proves = proves.map_or("nothing of Agora's".to_owned(), |c| c.to_string());
                return Err(TrustError::NotThisReplica {
                    path: cert_path,
                    component,
                    node_id,
                    proves,
                });
            }
        }
        let key_path = dir.join(key_file);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TrustError::Pem {
            path: key_path.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Trust::from_parts(dir, component, replica, ca, chain, key)
    }

    fn from_parts(
        dir: &Path,
        component: Component,
        replica: Option<u64>,
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Trust, TrustError> {
        let tls = |source| TrustError::Tls { dir: dir.to_owned(), source };
        let fingerprint = {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            for cert in &ca {
                hash.update(cert.as_ref());
            }
            hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
        };
        let secret_root = {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            hash.update(b"agora-trust-secret-v1\0");
            hash.update(key.secret_der());
            hash.finalize().into()
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(tls)?;
        }
        let roots = Arc::new(roots);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| tls(rustls::Error::General(e.to_string())))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls)?;
        Ok(Trust {
            component,
            replica,
            fingerprint,
            server: Arc::new(server),
            client: Arc::new(client),
            secret_root,
        })
    }

    /// A 32-byte secret for `purpose`, derived from this component's private key: every
    /// process holding the same credentials (every seller server of a cluster, say) derives
    /// the same one, and nobody without the key can. The frontends key the storefront's
    /// login forms with it, so that any of them can check a form another one served.
    pub fn secret(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.secret_root);
        hash.update(purpose.as_bytes());
        hash.finalize().into()
    }

    /// The component these credentials prove.
    pub fn component(&self) -> Component {
        self.component
    }

    /// The replica these credentials prove, for a database replica's own.
    pub fn replica(&self) -> Option<u64> {
        self.replica
    }

    /// Which cluster these credentials belong to: the SHA-256 of its CA certificate, in
    /// hex. A replica stamps its data directory with it (crates/replication).
    pub fn cluster_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How a server with these credentials takes connections: mutual TLS only.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor::MutualTls(self.server.clone())
    }

    /// How this component connects to the cluster's other servers.
    pub fn connector(&self) -> Connector {
        Connector::MutualTls(self.client.clone())
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let pem =
        |reason: String| TrustError::Pem { path: path.to_owned(), what: "certificate", reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in it".into()));
    }
    Ok(certs)
}

/// What [`create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new cluster CA and every component's certificate were written.
    New,
    /// The directory already held a cluster's credentials; nothing was changed.
    Existing,
}

/// Makes a new cluster's credentials in `dir` (created 0700; every file 0600): a CA
/// and a certificate and key for every [`Component`] that is not a database, valid for 100
/// years; each database replica's own are made by [`issue`]. If `dir` already holds a
/// complete set, leaves it as it is; a partial set is an error, never overwritten.
pub fn create(dir: &Path) -> Result<Created, TrustError> {
    let shared = Component::ALL.into_iter().filter(|c| !c.is_database());
    let files: Vec<String> = [CA_CERT.to_owned(), CA_KEY.to_owned()]
        .into_iter()
        .chain(shared.clone().flat_map(|r| [cert_file(r), key_file(r)]))
        .collect();
    let (present, absent): (Vec<&String>, Vec<&String>) =
        files.iter().partition(|f| dir.join(f).exists());
    match (present.first(), absent.first()) {
        (Some(_), None) => return Ok(Created::Existing),
        (Some(found), Some(missing)) => {
            return Err(TrustError::Incomplete {
                dir: dir.to_owned(),
                found: (*found).clone(),
                missing: (*missing).clone(),
            });
        }
        (None, _) => {}
    }
    private_dir(dir)?;

    let cluster =
        crate::messages::new_op_id().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(rcgen::DnType::OrganizationName, "Agora");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("Agora cluster {cluster}"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    ca_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&dir.join(CA_CERT), ca_cert.pem().as_bytes(), 0o600)?;
    write_file(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes(), 0o600)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    for component in shared {
        let names = vec![component.subject()];
        mint(&issuer, names, &dir.join(cert_file(component)), &dir.join(key_file(component)))?;
    }
    Ok(Created::New)
}

/// Makes the certificate and key of replica `node_id` of `component`'s groups in `dir`
/// (`<component>-<node_id>.crt` and `.key`, 0600), signed by the cluster CA there (which
/// needs `ca.key`): what `agora up` runs for every replica it starts and `agora credentials
/// issue` for a replica on a host of its own. The certificate names the component, as
/// every certificate of it does, and the node: its group's Raft messages are accepted
/// only in that node's name. A pair already there is left as it is.
pub fn issue(dir: &Path, component: Component, node_id: u64) -> Result<Created, TrustError> {
    if !component.is_database() {
        return Err(TrustError::NotAReplica(format!(
            "only the databases (customer-db, product-db, payments) have a certificate per \
             replica, not {component}"
        )));
    }
    if node_id == 0 {
        return Err(TrustError::NotAReplica("node ids start at 1".into()));
    }
    let (cert, key) = (replica_cert_file(component, node_id), replica_key_file(component, node_id));
    let incomplete =
        |found, missing| TrustError::Incomplete { dir: dir.to_owned(), found, missing };
    match (dir.join(&cert).exists(), dir.join(&key).exists()) {
        (true, true) => return Ok(Created::Existing),
        (true, false) => return Err(incomplete(cert, key)),
        (false, true) => return Err(incomplete(key, cert)),
        (false, false) => {}
    }
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => TrustError::NoAuthority { dir: dir.to_owned() },
            _ => TrustError::Io { path, source },
        })
    };
    let ca_key = rcgen::KeyPair::from_pem(&read(CA_KEY)?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key)?;
    let names = vec![component.subject(), component.replica_subject(node_id)];
    mint(&issuer, names, &dir.join(cert), &dir.join(key))?;
    Ok(Created::New)
}

/// [`issue`]s the certificates of nodes 1 to `replicas` of every database in `dir` that
/// are not there yet (credentials made before replicas had their own get them this way);
/// returns how many were made.
pub fn issue_replicas(dir: &Path, replicas: u64) -> Result<usize, TrustError> {
    let mut made = 0;
    for component in Component::DATABASES {
        for node_id in 1..=replicas {
            made += usize::from(issue(dir, component, node_id)? == Created::New);
        }
    }
    Ok(made)
}

/// Makes a key and a certificate for `names` (DNS subject alternative names, the first
/// also the common name) signed by `issuer`, valid for 100 years, and writes both (0600).
fn mint(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    names: Vec<String>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TrustError> {
    let key = rcgen::KeyPair::generate()?;
    let common_name = names.first().cloned().unwrap_or_default();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Agora");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    // The key first: a certificate without its key would look like a complete pair to
    // nobody (`issue` calls one without the other incomplete), but the key alone is
    // never mistaken for a usable identity.
    write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o600)
}

/// Creates `dir` (and its parents) readable by its owner only, or tightens it to that.
pub fn private_dir(dir: &Path) -> Result<(), TrustError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| TrustError::Io { path: dir.to_owned(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TrustError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TrustError::Io { path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io)
}

/// How a server takes a new connection.
#[derive(Clone, Default)]
pub enum Acceptor {
    /// In the clear, from anyone: the frontends' public doors.
    #[default]
    Open,
    /// Mutual TLS: only a caller with a certificate of this cluster gets past the
    /// handshake, and its component is read from that certificate.
    MutualTls(Arc<rustls::ServerConfig>),
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acceptor::Open => "Open",
            Acceptor::MutualTls(_) => "MutualTls",
        })
    }
}

/// The first byte of every TLS handshake (a handshake record).
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

impl Acceptor {
    /// Whether callers must present the cluster's credentials.
    pub fn is_mutual_tls(&self) -> bool {
        matches!(self, Acceptor::MutualTls(_))
    }

    /// Sets up `stream` as a connection: for mutual TLS, the handshake, which fails for a
    /// caller without a certificate of this cluster. Returns the stream and who is on it.
    pub async fn accept<S: Stream>(&self, stream: S) -> io::Result<(BoxStream, Caller)> {
        match self {
            Acceptor::Open => Ok((Box::new(stream), Caller::Public)),
            Acceptor::MutualTls(config) => {
                let tls = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream).await?;
                let caller = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(identity_of)
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            "the client certificate names no Agora component",
                        )
                    })?;
                Ok((Box::new(tls), caller))
            }
        }
    }
}

/// Who a certificate of this cluster proves (its chain was already verified): the one
/// component it names, and for a database replica's own certificate, the one node. A
/// certificate naming two components, or two nodes, proves nothing.
fn identity_of(cert: &CertificateDer<'_>) -> Option<Caller> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let valid_for = |name: String| {
        ServerName::try_from(name)
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    };
    let mut components = Component::ALL.into_iter().filter(|c| valid_for(c.subject()));
    let component = components.next()?;
    if components.next().is_some() {
        return None;
    }
    // The node's name is read from the certificate's names, then checked as any name is.
    let suffix = format!(".{}", component.subject());
    let nodes: std::collections::BTreeSet<u64> = cert
        .valid_dns_names()
        .filter_map(|name| name.strip_prefix("replica-")?.strip_suffix(&suffix)?.parse().ok())
        .filter(|&node_id| node_id > 0 && valid_for(component.replica_subject(node_id)))
        .collect();
    match nodes.into_iter().collect::<Vec<_>>()[..] {
        [] => Some(Caller::Node(component)),
        [node_id] => Some(Caller::Replica(component, node_id)),
        _ => None,
    }
}

/// How a client sets up a connection it has opened.
#[derive(Clone, Default)]
pub enum Connector {
    /// In the clear: clients of the public doors.
    #[default]
    Open,
    /// Mutual TLS with this component's certificate; the server must prove it is the
    /// service asked for.
    MutualTls(Arc<rustls::ClientConfig>),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connector::Open => "Open",
            Connector::MutualTls(_) => "MutualTls",
        })
    }
}

impl Connector {
    /// Sets up `stream`, just connected to a server of `service`.
    pub async fn connect<S: Stream>(&self, stream: S, service: ServiceId) -> io::Result<BoxStream> {
        let server = Component::serving(service);
        self.connect_to(stream, server).await
    }

    /// Sets up `stream`, just connected to a server that must prove it is `server` (any
    /// of the cluster's components when `None`, which only the clear connector allows).
    pub async fn connect_to<S: Stream>(
        &self,
        stream: S,
        server: Option<Component>,
    ) -> io::Result<BoxStream> {
        let name = || {
            let server = server.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no component named to connect to")
            })?;
            Ok(server.subject())
        };
        self.connect_as(stream, name).await
    }

    /// Sets up `stream`, just connected to replica `node_id` of `component`'s groups,
    /// which must prove it is that replica: a Raft message reaches only the node it is
    /// for, whatever address the membership gave.
    pub async fn connect_to_replica<S: Stream>(
        &self,
        stream: S,
        component: Component,
        node_id: u64,
    ) -> io::Result<BoxStream> {
        self.connect_as(stream, || Ok(component.replica_subject(node_id))).await
    }

    /// Sets up `stream`: in the clear, or by mutual TLS with a server whose certificate
    /// must carry the name `name` gives (asked for only then).
    async fn connect_as<S: Stream>(
        &self,
        stream: S,
        name: impl FnOnce() -> io::Result<String>,
    ) -> io::Result<BoxStream> {
        match self {
            Connector::Open => Ok(Box::new(stream)),
            Connector::MutualTls(config) => {
                let name = ServerName::try_from(name()?)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls =
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await?;
                Ok(Box::new(tls))
            }
        }
    }
}

/// Says, for a person, why a TLS connection failed, when the I/O error is rustls's.
pub fn explain(error: &io::Error) -> String {
    let tls = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server refused this component's credentials ({alert:?}): are they from the \
             same cluster (the same ca.crt)?"
        ),
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the server's certificate is not trusted ({why:?}): is it this cluster's, and the \
             service this address should be?"
        ),
        Some(other) => format!("TLS failed: {other}"),
        None => error.to_string(),
    }
}
