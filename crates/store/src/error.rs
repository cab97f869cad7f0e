//! How storage failures reach callers.

use agora_proto::ApiError;
use tracing::error;

/// Maps a SQLite failure inside a job to an internal error, logging the details.
pub fn db_error(e: rusqlite::Error) -> ApiError {
    error!(error = %e, "storage error");
    ApiError::internal("storage error")
}
