//! `sluice demo`: the whole story in one process, with nothing to configure.

pub mod jobs;
pub mod sim;
