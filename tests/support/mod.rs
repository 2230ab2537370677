//! Shared helpers for integration tests.
//!
//! Every test binary compiles this module but uses only part of it.

#[allow(dead_code)]
pub mod fake_robot;

#[allow(dead_code)]
pub mod daemon;

#[allow(dead_code)]
pub mod fake_slack;

#[allow(dead_code)]
pub mod fake_receiver;

#[allow(dead_code)]
pub mod fake_wecom;

#[allow(dead_code)]
pub mod fake_feishu;

#[allow(dead_code)]
pub mod lane;

#[allow(dead_code)]
pub mod door_load;

#[allow(dead_code)]
pub mod nats;

#[allow(dead_code)]
pub mod browser;
