//! How the store's failures reach the databases' callers. The store has errors of its own
//! ([`StoreError`]) and knows nothing of the wire protocol; the databases answer in
//! [`ApiError`]s. This crate stands between the two (every database's handlers reach the
//! store through a [`Replica`](crate::Replica)), so the conversion lives here, once.

use agora_proto::ApiError;
use agora_store::StoreError;
use tracing::error;

/// The answer to a caller whose request the store failed: `unavailable` while the store
/// shuts down (another replica, or a restarted server, may take the request), else an
/// internal error. A SQLite failure is logged with its details and answered as "storage
/// error" ([`db_error`]).
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Sql(e) => db_error(e),
        StoreError::ShuttingDown => ApiError::unavailable(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// Maps a SQLite failure inside a job to an internal error, logging the details: the
/// caller learns that storage failed, not how.
pub fn db_error(e: rusqlite::Error) -> ApiError {
    error!(error = %e, "storage error");
    ApiError::internal("storage error")
}

/// A store call's answer as a database gives it: the job's own answer, or the store's
/// failure as [`store_error`] answers it.
pub fn store_answer<T>(answer: Result<Result<T, ApiError>, StoreError>) -> Result<T, ApiError> {
    answer.map_err(store_error)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::ErrorCode;

    /// The answers callers got when the store spoke the protocol's errors itself.
    #[test]
    fn each_store_failure_is_answered_as_before() {
        let cases = [
            (StoreError::Sql(rusqlite::Error::InvalidQuery), ErrorCode::Internal, "storage error"),
            (StoreError::ShuttingDown, ErrorCode::Unavailable, "storage is shutting down"),
            (StoreError::WriterStopped, ErrorCode::Internal, "storage writer stopped"),
            (StoreError::ReaderStopped, ErrorCode::Internal, "storage reader stopped"),
            (StoreError::CommitFailed, ErrorCode::Internal, "storage commit failed"),
            (StoreError::NoRuntime, ErrorCode::Internal, "storage used outside an async runtime"),
        ];
        for (failure, code, message) in cases {
            let e = store_error(failure);
            assert_eq!((e.code, e.message.as_str()), (code, message));
        }
    }

    #[test]
    fn a_job_s_own_answer_passes_through_untouched() {
        let refused = ApiError::new(ErrorCode::InvalidArgument, "no");
        assert_eq!(store_answer(Ok(Err::<(), _>(refused.clone()))), Err(refused));
        assert_eq!(store_answer(Ok(Ok::<_, ApiError>(7))), Ok(7));
    }
}
