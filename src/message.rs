//! A digest's message as sealed: what its robot is sent on every try, prepared once by the
//! robot's provider ([`crate::provider::Provider::prepare`]) and kept in the store. The store
//! keeps it without knowing any platform, and a provider sends it without knowing the store.

use serde::{Deserialize, Serialize};

/// A message ready to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The title and text as people read them (the API shows them; the console prints them).
    pub title: String,
    pub text: String,
    /// The request body as the platform takes it, less what each try adds (a timestamp, a
    /// signature); `null` for a provider that posts nothing.
    pub body: serde_json::Value,
}
