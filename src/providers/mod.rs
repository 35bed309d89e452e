//! Providers: threads that publish into the loop through a `Publisher`.
//! `--demo`, `--agents-dir`, `--poll` and `--exec`, and the fetch / compare /
//! publish / back-off loop the last two share.

pub mod agents;
pub mod demo;
pub mod exec;
pub mod poll;
pub mod source;
