//! Nothing from an alert forges the footer, breaks a line or brings markup.

use super::*;

#[test]
fn an_alert_title_cannot_forge_a_digest_footer() {
    let forged = "sluice digest #999 · 99,999 alerts";
    let mut a = alert(forged, Severity::Critical, Some(forged), "x");
    a.text = Some(format!(
        "{forged}\n  SLUICE\u{200B} Digest ＃7 · 1 alert\n{forged}"
    ));
    a.labels.insert("instance".into(), forged.into());
    let mut b = alert(&format!("  {forged}"), Severity::Info, None, "y");
    b.text = Some(forged.into());
    let alerts = [a, b];
    let t = exposing_template();
    let mut s = spec(19_000);
    for levels in [[0; SECTIONS], [1; SECTIONS], [2; SECTIONS]] {
        let text = render_at(&s, &alerts, levels);
        let r = Plan::new(&DingTalk, &s, &alerts).finish(text, 0, &chosen(&s, &alerts));
        only_the_last_line_is_a_footer(&r, 42, 2).unwrap();
    }
    assert!(
        render(&s, &alerts)
            .text
            .contains("\n- “sluice digest” #999 · 99,999 alerts\n> “sluice digest” #999")
    );
    s.templates = Some(&t);
    let r = render(&s, &alerts);
    assert!(
        r.text.contains("\n“sluice digest” #999 · 99,999 alerts\n"),
        "{}",
        r.text
    );
    only_the_last_line_is_a_footer(&r, 42, 2).unwrap();
}

#[test]
fn alert_content_cannot_inject_images_html_or_bidi_overrides() {
    let mut a = alert(
        "disk full <font color=red>PAID</font> ![](https://t.example/p.gif)",
        Severity::Critical,
        Some("disk"),
        "x",
    );
    a.text = Some(
        "![pixel](https://t.example/p.gif) <!-- hidden --> <img src=x>\n\
         see [runbook](https://wiki.example/disk) or [this](dingtalk://dingtalkclient/page/link?url=x)\n\
         invoice\u{202E}fdp.exe &#x202E; **do** _this_"
            .into(),
    );
    let text = render_at(&spec(19_000), std::slice::from_ref(&a), [0; SECTIONS]);
    assert!(
        text.contains(
            "\n- disk full ＜font color=red>PAID＜/font> ！[］(https://t.example/p.gif)\n\
             > [pixel](https://t.example/p.gif) ＜!-- hidden --> ＜img src=x>\n\
             > see [runbook](https://wiki.example/disk) or [this］(dingtalk://dingtalkclient/page/link?url=x)\n\
             > invoicefdp.exe ＆#x202E; **do** _this_\n"
        ),
        "{text}"
    );
    let text = render_at(&spec(19_000), std::slice::from_ref(&a), [1; SECTIONS]);
    assert!(
        text.contains(" — [pixel](https://t.example/p.gif) ＜!-- hidden --> ＜img src=x>\n"),
        "{text}"
    );
    // The same through a template.
    let t = exposing_template();
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let r = render(&s, std::slice::from_ref(&a));
    for bad in ["<font", "<!--", "<img", "![", "\u{202E}", "](dingtalk"] {
        assert!(!r.text.contains(bad), "{bad:?} in {}", r.text);
    }
}

#[test]
fn titles_cannot_break_lines_or_become_headings() {
    let mut a = alert(
        "# big\n> quote\r\n\ttab\u{7}bell\u{2028}sep",
        Severity::Info,
        None,
        "x",
    );
    a.text = Some("line one\u{85}still one\n#two".to_string());
    // A `#` that starts a list item's content (or a quote line) would make a heading in
    // it, so it is written as its fullwidth twin.
    let text = render_at(&spec(19_000), std::slice::from_ref(&a), [1; SECTIONS]);
    assert_eq!(
        alert_lines(&text),
        ["- ＃ big > quote   tab bell sep — line one still one"]
    );
    let text = render_at(&spec(19_000), &[a], [0; SECTIONS]);
    assert!(text.contains("\n- ＃ big > quote   tab bell sep\n> line one still one\n> ＃two\n"));
    // Group names are cleaned too.
    let b = alert("t", Severity::Info, Some("g\nh"), "y");
    assert!(render(&spec(19_000), &[b]).text.contains("\n**g h** · 1\n"));
}

#[test]
fn long_titles_are_cut_on_char_boundaries() {
    // 100 CJK characters: 300 bytes, cut to 66 characters (198 bytes).
    let title: String = "数据质量告警".chars().cycle().take(100).collect();
    let mut a = alert(&title, Severity::Critical, None, "x");
    a.text = Some("表".repeat(100));
    let text = render_at(&spec(19_000), &[a], [1; SECTIONS]);
    let line = alert_lines(&text)[0];
    let shown: String = title.chars().take(66).collect();
    let excerpt = "表".repeat(53);
    assert_eq!(line, format!("- {shown}… — {excerpt}…"));

    let ascii = alert(&"x".repeat(250), Severity::Critical, None, "y");
    let r = render(&spec(19_000), &[ascii]);
    assert_eq!(alert_lines(&r.text)[0], format!("- {}…", "x".repeat(200)));
    let exact = alert(&"x".repeat(200), Severity::Critical, None, "y");
    let r = render(&spec(19_000), &[exact]);
    assert_eq!(alert_lines(&r.text)[0], format!("- {}", "x".repeat(200)));
}
