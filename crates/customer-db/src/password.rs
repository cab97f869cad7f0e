//! Password hashing with argon2id. Hashing is deliberately slow and memory-hungry, so it
//! runs on blocking threads, at most [`MAX_CONCURRENT`] at a time: a burst of logins cannot
//! starve the runtime or balloon the process's memory.

use std::sync::LazyLock;

use agora_proto::ApiError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Hashes computed at once; more wait their turn.
pub const MAX_CONCURRENT: usize = 2;

static PERMITS: Semaphore = Semaphore::const_new(MAX_CONCURRENT);

/// OWASP's second argon2id configuration: 7 MiB of memory, 5 passes, one lane. As strong
/// as the 19 MiB / 2 passes default, with a third of the memory per login in flight.
fn hasher() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A valid hash of a password nobody knows, verified against when the username does not
/// exist, so that the answer takes as long as for a wrong password.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hasher().hash_password(b"no such user").ok().map(|h| h.to_string()));

/// The PHC string (`$argon2id$v=19$...`) of `password` with a fresh random salt.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let _permit = PERMITS.acquire().await.map_err(|_| ApiError::internal("hasher closed"))?;
    tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|_| ApiError::internal("hasher failed"))?
}

/// Whether `password` matches the stored PHC string; with no stored hash, spends the same
/// time and answers `false`.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    let _permit = PERMITS.acquire().await.map_err(|_| ApiError::internal("hasher closed"))?;
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let Some(phc) = stored.or_else(|| DUMMY_HASH.clone()) else { return false };
        let Ok(parsed) = PasswordHash::new(&phc) else { return false };
        hasher().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .map_err(|_| ApiError::internal("hasher failed"))
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
    }
}
