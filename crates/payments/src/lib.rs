//! The payments service: the financial-transactions service a purchase pays through.
//!
//! It approves or declines a charge as a card processor would: a number that fails the
//! Luhn check, or a card past its expiry month, is declined; any other card is approved
//! with a configurable probability, decided by a hash of the seed and the idempotency
//! key, so tests are deterministic. Every decision goes into a durable ledger
//! (`payments.db`) before it is answered, and the ledger is keyed by the idempotency key:
//! the first request with a key decides, every later one gets the same answer.
//!
//! Card numbers are never stored: the ledger keeps the last four digits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_domain::{Card, Money, UserId};
use agora_proto::messages::payments::{Outcome, Request, Response};
use agora_proto::{ApiError, ErrorCode, Handler, ServerConfig, Trust};
use agora_store::{Store, StoreConfig, db_error};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The ledger's table.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS charges (
    key           TEXT    PRIMARY KEY,
    state         INTEGER NOT NULL,   -- APPROVED, DECLINED or CANCELLED
    amount        INTEGER NOT NULL,   -- cents
    holder        TEXT    NOT NULL,
    last4         TEXT    NOT NULL,
    authorization TEXT    NOT NULL,   -- approval reference, or decline reason
    at_ms         INTEGER NOT NULL,
    payer         INTEGER NOT NULL DEFAULT 0  -- the buyer charged (0: recorded before payers were)
) WITHOUT ROWID;";

/// `charges.state` of an approved charge. The numbers are stored; never renumber.
pub const APPROVED: i64 = 1;
/// `charges.state` of a declined charge.
pub const DECLINED: i64 = 2;
/// `charges.state` of a charge cancelled before it arrived.
pub const CANCELLED: i64 = 3;

/// Everything the payments service can be told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `payments.db` lives.
    pub data_dir: PathBuf,
    /// Chance that a valid, unexpired card is approved.
    pub approve_probability: f64,
    /// Seed of the approval decision.
    pub seed: u64,
    /// What an acknowledged charge survives.
    pub durability: agora_store::Durability,
    /// Connection and frame limits.
    pub server: ServerConfig,
    /// The service's credentials: only the cluster's components may connect.
    pub trust: Trust,
}

impl Config {
    /// Defaults: 90% approval; data under `data_dir`, the cluster credentials `trust`.
    pub fn new(data_dir: impl Into<PathBuf>, trust: Trust) -> Self {
        Config {
            trust,
            data_dir: data_dir.into(),
            approve_probability: 0.9,
            seed: 0,
            durability: agora_store::Durability::default(),
            server: ServerConfig::default(),
        }
    }
}

/// Starting the payments service failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The ledger could not be opened.
    #[error(transparent)]
    Open(#[from] agora_store::OpenError),
    /// The ledger of an earlier version could not be brought up to date.
    #[error("cannot upgrade the ledger {0}: {1}")]
    Upgrade(PathBuf, String),
}

/// Serves the payments service on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    agora_store::private_dir(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    let path = config.data_dir.join("payments.db");
    let store = Store::open(
        &StoreConfig { durability: config.durability, ..StoreConfig::new(&path) },
        SCHEMA,
    )?;
    // A ledger from before charges named their payer gains the column (0 for old rows).
    store
        .write(|c| {
            let has_payer = c
                .prepare("SELECT 1 FROM pragma_table_info('charges') WHERE name = 'payer'")
                .and_then(|mut st| st.exists([]))
                .map_err(db_error)?;
            if !has_payer {
                c.execute_batch("ALTER TABLE charges ADD COLUMN payer INTEGER NOT NULL DEFAULT 0")
                    .map_err(db_error)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StartError::Upgrade(path.clone(), e.to_string()))?;
    let handler = Arc::new(PaymentsService {
        store,
        approve_probability: config.approve_probability.clamp(0.0, 1.0),
        seed: config.seed,
    });
    info!(addr = ?listener.local_addr().ok(), path = %path.display(), "payments serving");
    let server = ServerConfig { acceptor: config.trust.acceptor(), ..config.server.clone() };
    agora_proto::serve(listener, handler, server, shutdown).await;
    Ok(())
}

/// The payments service's handler.
#[derive(Debug)]
pub struct PaymentsService {
    store: Store,
    approve_probability: f64,
    seed: u64,
}

impl Handler<agora_proto::Payments> for PaymentsService {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::Charge { key, card, amount, payer } => {
                check_key(&key)?;
                let card = card.validate()?;
                if amount.cents() <= 0 {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        "invalid amount: must be positive",
                    ));
                }
                let decision = self.decide(&key, &card, amount, payer, now_ms());
                let outcome = self
                    .store
                    .write(move |c| {
                        if let Some(earlier) = recorded(c, &key)? {
                            return Ok(earlier);
                        }
                        record(c, &key, &decision, amount, payer, &card)?;
                        Ok(decision)
                    })
                    .await?;
                agora_proto::fault::crash_point("charge-before-ack");
                Ok(Response::Charge(outcome))
            }
            Request::Resolve { key } => {
                check_key(&key)?;
                let outcome = self
                    .store
                    .write(move |c| {
                        if let Some(earlier) = recorded(c, &key)? {
                            return Ok(earlier);
                        }
                        let nobody = Card {
                            holder: "-".into(),
                            number: String::new(),
                            expiry: String::new(),
                        };
                        let cancelled = Outcome::Cancelled;
                        record(c, &key, &cancelled, Money::from_cents(0), 0, &nobody)?;
                        Ok(Outcome::Cancelled)
                    })
                    .await?;
                Ok(Response::Charge(outcome))
            }
        }
    }
}

impl PaymentsService {
    /// What a processor would say to this card today.
    fn decide(&self, key: &str, card: &Card, amount: Money, payer: UserId, now_ms: i64) -> Outcome {
        if !luhn(&card.number) {
            return Outcome::Declined { reason: "invalid card number".into() };
        }
        let (year, month) = Card::expiry_month(&card.expiry).unwrap_or((0, 0));
        let (this_year, this_month) = year_month(now_ms);
        if (year, month) < (this_year, this_month) {
            return Outcome::Declined { reason: format!("card expired {}", card.expiry) };
        }
        let digest = Sha256::digest(format!("{}:{key}", self.seed).as_bytes());
        let roll =
            u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) as f64 / u64::MAX as f64;
        if roll >= self.approve_probability {
            return Outcome::Declined { reason: "declined by the issuer".into() };
        }
        let authorization: String = digest[8..14].iter().map(|b| format!("{b:02X}")).collect();
        Outcome::Approved { authorization, amount, payer }
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 128 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "invalid key: must be 1 to 128 bytes",
        ));
    }
    Ok(())
}

fn recorded(c: &Connection, key: &str) -> Result<Option<Outcome>, ApiError> {
    c.prepare_cached("SELECT state, amount, authorization, payer FROM charges WHERE key = ?1")
        .and_then(|mut st| {
            st.query_row([key], |r| {
                let text: String = r.get(2)?;
                Ok(match r.get::<_, i64>(0)? {
                    APPROVED => Outcome::Approved {
                        authorization: text,
                        amount: Money::from_cents(r.get(1)?),
                        payer: r.get::<_, i64>(3)? as UserId,
                    },
                    DECLINED => Outcome::Declined { reason: text },
                    _ => Outcome::Cancelled,
                })
            })
            .optional()
        })
        .map_err(db_error)
}

fn record(
    c: &Connection,
    key: &str,
    outcome: &Outcome,
    amount: Money,
    payer: UserId,
    card: &Card,
) -> Result<(), ApiError> {
    let (state, text) = match outcome {
        Outcome::Approved { authorization, .. } => (APPROVED, authorization.as_str()),
        Outcome::Declined { reason } => (DECLINED, reason.as_str()),
        Outcome::Cancelled => (CANCELLED, ""),
    };
    c.prepare_cached(
        "INSERT INTO charges (key, state, amount, holder, last4, authorization, at_ms, payer) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            key,
            state,
            amount.cents(),
            card.holder,
            card.last4(),
            text,
            now_ms(),
            payer as i64
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

/// Whether `number` passes the Luhn check digit.
pub fn luhn(number: &str) -> bool {
    let mut sum = 0;
    for (i, b) in number.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !number.is_empty() && sum % 10 == 0
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// (year, month) of a Unix time in ms, UTC.
fn year_month(ms: i64) -> (i32, u32) {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date library for one use.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_check_digit() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn(""));
    }

    #[test]
    fn calendar() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(1_700_000_000_000), (2023, 11));
        assert_eq!(year_month(951_782_400_000), (2000, 2)); // 2000-02-29
    }

    fn service(p: f64) -> (PaymentsService, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreConfig::new(dir.path().join("p.db")), SCHEMA).expect("open");
        (PaymentsService { store, approve_probability: p, seed: 7 }, dir)
    }

    fn card(number: &str, expiry: &str) -> Card {
        Card { holder: "Bea".into(), number: number.into(), expiry: expiry.into() }
    }

    async fn charge(s: &PaymentsService, key: &str, card: Card) -> Outcome {
        let request =
            Request::Charge { key: key.into(), card, amount: Money::from_cents(500), payer: 7 };
        match s.handle(request).await.expect("answer") {
            Response::Charge(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_key_is_charged_once_and_answers_the_same_forever() {
        let (s, _dir) = service(1.0);
        let first = charge(&s, "k1", card("4111 1111 1111 1111", "12/99")).await;
        assert!(matches!(first, Outcome::Approved { amount, .. } if amount.cents() == 500));
        // A different card on the same key changes nothing: the key already decided.
        assert_eq!(charge(&s, "k1", card("4111111111111112", "12/99")).await, first);
        let resolved = s.handle(Request::Resolve { key: "k1".into() }).await.expect("resolve");
        assert_eq!(resolved, Response::Charge(first));
    }

    #[tokio::test]
    async fn bad_numbers_and_expired_cards_are_declined() {
        let (s, _dir) = service(1.0);
        assert!(matches!(
            charge(&s, "a", card("4111111111111112", "12/99")).await,
            Outcome::Declined { .. }
        ));
        assert!(matches!(
            charge(&s, "b", card("4111111111111111", "01/20")).await,
            Outcome::Declined { .. }
        ));
        let (never, _dir) = service(0.0);
        assert!(matches!(
            charge(&never, "c", card("4111111111111111", "12/99")).await,
            Outcome::Declined { .. }
        ));
    }

    #[tokio::test]
    async fn a_resolved_key_can_no_longer_be_charged() {
        let (s, _dir) = service(1.0);
        let resolved = s.handle(Request::Resolve { key: "late".into() }).await.expect("resolve");
        assert_eq!(resolved, Response::Charge(Outcome::Cancelled));
        assert_eq!(charge(&s, "late", card("4111111111111111", "12/99")).await, Outcome::Cancelled);
    }
}
