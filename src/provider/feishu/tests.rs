//! The Feishu fitter end to end, without the network: any batch, rendered for either message
//! type with any mentions, makes a body (signed) within the 20 000-byte cap that ends with the
//! footer and accounts for every alert.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::digest::tests::model::{arb_alert, arb_hostile_alert, arb_spec_parts, zones};
use crate::digest::{footer, parse_footer};
use crate::mention::MAX_MENTIONS;

const PUBLIC_URL: &str = "https://sluice.example.com/a/rather/long/path/to/make/links/cost";

/// The body as sent: the prepared one with a timestamp and sign.
fn signed(mut body: Value) -> Vec<u8> {
    body["timestamp"] = "1599360473".into();
    body["sign"] = sign("demo", 1_599_360_473).into();
    serde_json::to_vec(&body).expect("serializes")
}

/// The last line a body shows: a post's last paragraph, a card markdown's last line.
fn last_text(body: &Value) -> String {
    match body["msg_type"].as_str() {
        Some("post") => {
            let content = body["content"]["post"]["zh_cn"]["content"]
                .as_array()
                .unwrap();
            content.last().unwrap()[0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        }
        _ => {
            let markdown = body["card"]["elements"][0]["text"]["content"]
                .as_str()
                .unwrap();
            markdown.rsplit('\n').next().unwrap().to_string()
        }
    }
}

fn arb_mentions() -> impl Strategy<Value = Mention> {
    (
        prop::collection::vec("[a-z0-9_]{1,64}", 0..=MAX_MENTIONS),
        any::<bool>(),
    )
        .prop_map(|(user_ids, all)| Mention {
            mobiles: vec!["13800000000".into()],
            user_ids,
            all,
        })
}

/// Renders and prepares a digest as a robot of `msgtype` does; checks what the robot receives.
fn check_body(
    alerts: &[Alert],
    spec: DigestSpec,
    mentions: &Mention,
    msgtype: MsgType,
) -> Result<(), TestCaseError> {
    let r = render(spec, alerts, mentions, msgtype);
    let link = spec.link;
    let body = match msgtype {
        MsgType::Interactive => card_body(&r.text, link),
        _ => post_body(&r.title, &r.text, link, &people(mentions)),
    };
    let bytes = signed(body.clone());
    prop_assert!(bytes.len() <= MAX_BODY, "{} bytes", bytes.len());
    prop_assert!(std::str::from_utf8(&bytes).is_ok());
    prop_assert_eq!(r.listed + r.summarized, alerts.len());
    prop_assert_eq!(parse_footer(&r.text), Some((spec.id, alerts.len() as u64)));
    prop_assert_eq!(last_text(&body), footer(spec.id, alerts.len()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn every_body_fits_the_cap_ends_with_the_footer_and_accounts_for_every_alert(
        alerts in prop_oneof![
            prop::collection::vec(arb_alert(), 0..400),
            prop::collection::vec(arb_hostile_alert(), 0..60),
        ],
        (_, robot, keyword, _, id, zone, catch_up) in arb_spec_parts(),
        mentions in arb_mentions(),
        linked in any::<bool>(),
        interactive in any::<bool>(),
    ) {
        let zones = zones();
        let link = linked.then(|| format!("{PUBLIC_URL}/v1/digests/{id}"));
        let spec = DigestSpec {
            robot, id, keyword,
            link: link.as_deref(),
            max_bytes: 0,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (1_795_831_231_000 + a, 1_795_831_231_000 + b)),
            templates: None,
        };
        let msgtype = if interactive { MsgType::Interactive } else { MsgType::Post };
        check_body(&alerts, spec, &mentions, msgtype)?;
    }
}

/// Ten thousand alerts whose texts need escaping everywhere (each `"` and `\` costs two bytes
/// in JSON, each line of a post a paragraph), the most mentions a digest carries, a link:
/// still within the cap, for both message types.
#[test]
fn a_flood_of_costly_alerts_fills_the_body_to_the_cap_and_no_further() {
    let alerts: Vec<Alert> = (0..10_000)
        .map(|i| {
            let mut labels = crate::alert::Labels::new();
            labels.insert("alertname".into(), format!("check_\"{}\"", i % 40));
            Alert {
                title: format!("\"q\\{i}\" {}", "数据\\\"".repeat(20)),
                text: Some(format!("line \"1\"\n{}\nline 3\n", "\\\"".repeat(60))),
                severity: crate::alert::Severity::ALL[i % 4],
                status: crate::alert::Status::Firing,
                labels,
                fingerprint: format!("fp{i}"),
                source: None,
                time_ms: None,
                ends_ms: None,
                received_ms: 1_795_831_231_000 + i as i64,
                extra: None,
            }
        })
        .collect();
    let ids: Vec<String> = (0..MAX_MENTIONS).map(|i| format!("ou_{i:061}")).collect();
    let mentions = Mention {
        mobiles: Vec::new(),
        user_ids: ids,
        all: true,
    };
    let link = format!("{PUBLIC_URL}/v1/digests/99");
    let tz = jiff::tz::TimeZone::UTC;
    for msgtype in [MsgType::Post, MsgType::Interactive] {
        for m in [&mentions, &Mention::default()] {
            let spec = DigestSpec {
                robot: "ops",
                id: 99,
                keyword: Some("告警"),
                link: Some(&link),
                max_bytes: 0,
                tz: &tz,
                catch_up: Some((1_795_831_000_000, 1_795_831_231_000)),
                templates: None,
            };
            check_body(&alerts, spec, m, msgtype).unwrap();
            let r = render(spec, &alerts, m, msgtype);
            let body = match msgtype {
                MsgType::Interactive => card_body(&r.text, Some(&link)),
                _ => post_body(&r.title, &r.text, Some(&link), &people(m)),
            };
            // The budget is used, not left idle: a digest of this flood is near the cap.
            let len = signed(body).len();
            assert!(len > MAX_BODY - 2_500, "{msgtype:?}: {len} bytes");

            // With a quota warning and a stand-in note written above the footer, still within.
            let target = crate::provider::Target {
                name: "ops",
                kind: crate::provider::ProviderKind::Feishu,
                webhook: None,
                secret: None,
                keywords: &[],
                msgtype,
                request_timeout: std::time::Duration::from_secs(1),
                hook: None,
            };
            let lines = [
                "⚠ 4 000 of this month's 5 000 sends used; at today's rate the quota runs out on 2026-12-24.".to_string(),
                "Standing in for robot \"other\": its monthly quota of 5 000 is spent.".to_string(),
            ];
            let r = crate::provider::render_with_lines(&target, spec, &alerts, m, &lines);
            let body = match msgtype {
                MsgType::Interactive => card_body(&r.text, Some(&link)),
                _ => post_body(&r.title, &r.text, Some(&link), &people(m)),
            };
            assert!(r.text.contains("Standing in for robot"), "{}", r.text);
            let len = signed(body).len();
            assert!(len <= MAX_BODY, "{msgtype:?} with lines: {len} bytes");
        }
    }
}

#[test]
fn mentions_are_written_in_each_msgtypes_form_above_the_footer() {
    let alert =
        crate::digest::tests::alert("disk full", crate::alert::Severity::Critical, None, "x");
    let m = Mention {
        mobiles: vec!["13800000000".into()],
        user_ids: vec!["ou_abc".into()],
        all: true,
    };
    let tz = jiff::tz::TimeZone::UTC;
    let spec = DigestSpec {
        robot: "ops",
        id: 3,
        keyword: None,
        link: None,
        max_bytes: 0,
        tz: &tz,
        catch_up: None,
        templates: None,
    };
    let card = render(spec, std::slice::from_ref(&alert), &m, MsgType::Interactive);
    let lines: Vec<&str> = card.text.lines().collect();
    assert_eq!(
        &lines[lines.len() - 3..],
        [
            "<at id=ou_abc></at> <at id=all></at>",
            "",
            "sluice digest #3 · 1 alert"
        ]
    );
    let post = render(spec, &[alert], &m, MsgType::Post);
    let body = post_body(&post.title, &post.text, None, &people(&m));
    let content = body["content"]["post"]["zh_cn"]["content"]
        .as_array()
        .unwrap();
    let n = content.len();
    assert_eq!(
        content[n - 3],
        serde_json::json!([{"tag": "at", "user_id": "ou_abc"}, {"tag": "at", "user_id": "all"}])
    );
    // The mobile number is nowhere: a custom bot cannot mention by number.
    assert!(!body.to_string().contains("13800000000"), "{body}");
    assert!(!card.text.contains("13800000000"), "{}", card.text);
}
