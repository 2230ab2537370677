use super::*;

#[test]
fn truncate_cuts_at_a_char_boundary_with_a_marker() {
    let s = "告".repeat(100);
    let t = truncate(&s, 50);
    assert!(t.len() <= 50, "{}", t.len());
    assert!(t.ends_with(TRUNCATED));
    assert_eq!(truncate("short", 50), "short");
}

#[test]
fn webhook_tokens_are_read_per_platform() {
    let p = |p: Platform, u: &str| p.webhook_token(u);
    assert_eq!(
        p(
            Platform::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=abc&x=1"
        ),
        Some("abc".into())
    );
    assert_eq!(
        p(
            Platform::Feishu,
            "https://open.feishu.cn/open-apis/bot/v2/hook/tok/"
        ),
        Some("tok".into())
    );
    assert_eq!(
        p(
            Platform::WeCom,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"
        ),
        Some("k1".into())
    );
    assert_eq!(p(Platform::WeCom, "not a url"), None);
}

#[test]
fn echoed_mentions_are_stripped_but_other_text_kept() {
    let extra = Extra {
        mobiles: vec!["138".into()],
        all: true,
        ..Extra::default()
    };
    assert_eq!(
        strip_echoes("a @138 b\n@138\n@all\n@139", &extra),
        "a b\n@139"
    );
}

#[test]
fn job_comes_from_the_query_then_the_user_agent_then_the_platform() {
    let mut q = HashMap::new();
    let mut h = HeaderMap::new();
    assert_eq!(job_label(Platform::Feishu, &q, &h), "feishu");
    h.insert(header::USER_AGENT, "Grafana/11.2".parse().unwrap());
    assert_eq!(job_label(Platform::Feishu, &q, &h), "Grafana");
    h.insert(header::USER_AGENT, "python-requests/2.31".parse().unwrap());
    assert_eq!(job_label(Platform::Feishu, &q, &h), "python-requests");
    q.insert("job".into(), "etl nightly!".into());
    assert_eq!(job_label(Platform::Feishu, &q, &h), "etlnightly");
}
