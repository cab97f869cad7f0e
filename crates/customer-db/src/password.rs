//! Password hashing with argon2id. Hashing is deliberately slow and memory-hungry, so it
//! runs on [`MAX_CONCURRENT`] dedicated threads, never on the async runtime: a burst of
//! logins queues up instead of starving other requests. Dedicated, long-lived threads
//! also bound memory: each hash needs 7 MiB, and the allocator keeps a freed block in the
//! arena of the thread that used it, so hashing on an ever-changing set of blocking-pool
//! threads grew the process by 7 MiB per thread (200 MiB after 40 concurrent sign-ups);
//! two threads keep at most two such blocks.

use std::sync::LazyLock;

use agora_proto::{ApiError, ErrorCode};
use std::cell::RefCell;

use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

/// Hashes computed at once; more wait their turn.
pub const MAX_CONCURRENT: usize = 2;

/// Hashes that may wait their turn: about a third of a second of hashing on two threads,
/// well within the frontends' deadline on a customer-db call. One more is answered
/// `overloaded` at once, so a flood of logins costs a bounded amount of memory and time
/// and never grows a queue that others wait behind. (The queue is the process's: every
/// customer database in one process, as in tests, shares it.)
pub const MAX_QUEUED: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue, started on first use.
static QUEUE: LazyLock<Option<crossbeam_channel::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(MAX_QUEUED);
    for i in 0..MAX_CONCURRENT {
        let rx = rx.clone();
        let started = std::thread::Builder::new().name(format!("password-{i}")).spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        });
        if started.is_err() {
            return None;
        }
    }
    Some(tx)
});

/// Runs `f` on a hashing thread.
async fn on_hasher<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let queue = QUEUE.as_ref().ok_or_else(|| ApiError::internal("no password hashing threads"))?;
    queue
        .try_send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => ApiError::new(
                ErrorCode::Overloaded,
                "too many logins and sign-ups at once; try again in a moment",
            ),
            crossbeam_channel::TrySendError::Disconnected(_) => {
                ApiError::internal("password hashing stopped")
            }
        })?;
    rx.await.map_err(|_| ApiError::internal("password hashing failed"))
}

/// OWASP's second argon2id configuration: 7 MiB of memory, 5 passes, one lane. As strong
/// as the 19 MiB / 2 passes default, with a third of the memory per login in flight.
const M_COST: u32 = 7 * 1024;
const T_COST: u32 = 5;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;

thread_local! {
    /// The hashing thread's argon2 working memory, allocated once and reused: allocating
    /// 7 MiB per hash made glibc keep every freed block (its dynamic mmap threshold), so
    /// the process grew by 7 MiB per login.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() != blocks {
            *memory = vec![Block::default(); blocks];
        }
        f(&mut memory[..])
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("password hashing: {e}"))
}

/// The PHC string (`$argon2id$v=19$m=7168,t=5,p=1$salt$hash`) of `password`.
fn hash_now(password: &[u8]) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(internal)?;
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)).map_err(internal)?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; OUTPUT_LEN];
    with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password, &salt, &mut out, memory)
    })
    .map_err(internal)?;
    let salt = Salt::new(&salt).map_err(internal)?;
    let out = Output::new(&out).map_err(internal)?;
    Ok(format!("$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${salt}${out}"))
}

/// Whether `password` matches the PHC string `stored` (whatever its argon2id parameters).
fn verify_now(password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let blocks = params.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = vec![0u8; expected.len()];
    let computed = with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory)
    });
    // Output's equality is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|out| &out == expected)
}

/// A valid hash of a password nobody knows, verified against when the username does not
/// exist, so that the answer takes as long as for a wrong password.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| hash_now(b"no such user").ok());

/// The PHC string of `password` with a fresh random salt.
pub async fn hash(password: String) -> Result<String, ApiError> {
    on_hasher(move || hash_now(password.as_bytes())).await?
}

/// Whether `password` matches the stored PHC string; with no stored hash, spends the same
/// time and answers `false`.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    on_hasher(move || {
        let known = stored.is_some();
        let Some(phc) = stored.or_else(|| DUMMY_HASH.clone()) else { return false };
        verify_now(password.as_bytes(), &phc) && known
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_never_hold_the_password() {
        let phc = hash("correct horse".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse".into(), Some(phc.clone())).await.expect("verify"));
        assert!(!verify("wrong horse".into(), Some(phc)).await.expect("verify"));
        assert!(!verify("anything".into(), None).await.expect("verify"));
        assert!(!verify("x".into(), Some("not a phc string".into())).await.expect("verify"));
    }

    #[test]
    fn our_phc_strings_are_standard_argon2id() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash_now(b"correct horse").expect("hash");
        let parsed = PasswordHash::new(&phc).expect("parses");
        let argon2 = Argon2::default();
        assert!(argon2.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2.verify_password(b"wrong", &parsed).is_err());
    }
}
