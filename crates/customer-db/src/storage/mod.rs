//! The customer database's tables, one module per concept. The handler, the purchase
//! coordinator and the state machine all reach the rows through these functions; none of
//! them calls back up, so the request code and the storage code have no cycle.
//!
//! Every function takes the connection it runs on: a read job's, or the write
//! transaction a command is applied in. None reads a clock or draws a random number, so
//! the writes are as deterministic as the arguments they are given.

pub mod accounts;
pub mod carts;
pub mod history;
pub mod purchase_log;
pub mod sessions;
