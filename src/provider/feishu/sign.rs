//! A Feishu bot's request signature (签名校验, ROBOTS.md §4).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}", message = empty)). Unlike DingTalk's, the
/// string to sign is the key and the message is empty, the timestamp is in seconds, and the
/// result goes into the JSON body as it is (no URL-encoding).
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_matches_the_known_answer_vector() {
        assert_eq!(
            sign("demo", 1_599_360_473),
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
        );
        // The timestamp is part of the key: another second, another sign.
        assert_ne!(sign("demo", 1_599_360_474), sign("demo", 1_599_360_473));
    }
}
