//! What can go wrong in the store itself, as opposed to a job's own refusal.
//!
//! A job's answer is its own business: [`Store::write`](crate::Store::write) and
//! [`Store::read`](crate::Store::read) hand it back untouched, whatever its error type,
//! inside an `Ok`. A [`StoreError`] says the store could not run the job or keep its work.
//! The databases turn it into an answer for their callers at their edge
//! (`agora_replication::store_error`), the one place that knows both the store and the
//! wire protocol.

/// The store failed to run a job, or to keep what it did.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed a statement.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The store is shutting down and takes no more jobs.
    #[error("storage is shutting down")]
    ShuttingDown,
    /// A write job's answer never came back: the writer stopped, or the job panicked
    /// (its work is undone).
    #[error("storage writer stopped")]
    WriterStopped,
    /// A read job's answer never came back: the reader stopped, or the job panicked.
    #[error("storage reader stopped")]
    ReaderStopped,
    /// The job succeeded, but its batch did not commit: its work is undone.
    #[error("storage commit failed")]
    CommitFailed,
    /// A write was queued outside an async runtime, where its batch cannot be run.
    #[error("storage used outside an async runtime")]
    NoRuntime,
    /// An answer recorded by [`at_most_once`](crate::at_most_once) does not decode.
    #[error("corrupt recorded answer: {0}")]
    CorruptAnswer(postcard::Error),
    /// An answer for [`at_most_once`](crate::at_most_once) to record does not encode.
    #[error("cannot encode an answer: {0}")]
    Encode(postcard::Error),
}
