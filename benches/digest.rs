//! Rendering cost by batch size. A digest lists at most a few hundred lines, so the large batches
//! measure grouping, counting and trying the levels, which is what must stay cheap when a robot
//! is flooded. One more bench renders 1 000 alerts through a custom template (the built-in one,
//! loaded as a custom template), which renders the template once per configuration tried. And
//! issue 12's case: 100 000 alerts across 50 alert names and 3 severities, each with its own
//! `instance` and a `rack`, where a section is listed as far as it fits and the rest is split by
//! rack (target: well under 50 ms). `render_wecom/100000` renders `render/100000`'s batch as a
//! WeCom robot's markdown digest, within its 4 096 raw bytes (the fit tries the same
//! configurations on a fifth of the room); `render_feishu/100000` and `render_slack/100000` are
//! `render/100000` in Feishu's post dialect and in Slack's mrkdwn.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jiff::tz::TimeZone;
use sluice::alert::{Alert, Labels, Severity, Status};
use sluice::digest::feishu::Post;
use sluice::digest::template::{BUILTIN_BODY, Templates};
use sluice::digest::{DigestSpec, Slack, render, render_in};
use sluice::mention::Mention;
use sluice::provider::{MsgType, wecom};

#[path = "support/fill_mix.rs"]
mod fill_mix;

/// `n` alerts over 200 groups with mixed severities; fingerprints repeat often enough that lines
/// merge. A fixed xorshift seed keeps runs comparable.
fn alerts(n: usize) -> Vec<Alert> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let severities = [
        Severity::Critical,
        Severity::Error,
        Severity::Error,
        Severity::Warning,
        Severity::Warning,
        Severity::Warning,
        Severity::Info,
        Severity::Info,
    ];
    (0..n)
        .map(|i| {
            let r = next();
            let group = r % 200;
            let table = (r >> 8) % 5_000;
            let mut labels = Labels::new();
            labels.insert("alertname".to_string(), format!("dq_check_{group}"));
            labels.insert("job".to_string(), "data-quality".to_string());
            labels.insert("table".to_string(), format!("ods_table_{table}"));
            Alert {
                title: format!("ods_table_{table}: {}% null user_id", (r >> 40) % 100),
                text: (i % 3 != 0).then(|| {
                    format!("\ncheck dq_check_{group} failed on partition {i}\nrows: {r}")
                }),
                severity: severities[((r >> 20) % 8) as usize],
                status: if (r >> 24) % 10 == 0 {
                    Status::Resolved
                } else {
                    Status::Firing
                },
                labels,
                fingerprint: format!("{:016x}", (r >> 28) % (n as u64 / 3 + 1)),
                source: None,
                time_ms: None,
                ends_ms: None,
                received_ms: 1_700_000_000_000 + i as i64,
                extra: None,
            }
        })
        .collect()
}

static UTC: TimeZone = TimeZone::UTC;

fn spec(templates: Option<&Templates>) -> DigestSpec<'_> {
    DigestSpec {
        robot: "ops",
        id: 42,
        keyword: Some("告警"),
        link: Some("https://sluice.example/r/ops/digests/42"),
        max_bytes: 19_000,
        tz: &UTC,
        catch_up: None,
        templates,
    }
}

fn bench_render(c: &mut Criterion) {
    let spec = spec(None);
    let mut group = c.benchmark_group("render");
    for n in [10, 1_000, 100_000] {
        let input = alerts(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| render(black_box(&spec), black_box(input)));
        });
    }
    group.finish();
}

fn bench_render_wecom(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_wecom");
    let n = 100_000;
    let input = alerts(n);
    let mentions = Mention::default();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
        b.iter(|| {
            // WeCom takes no keyword; the rest of the spec is `render`'s.
            let spec = DigestSpec {
                keyword: None,
                ..spec(None)
            };
            wecom::render(spec, black_box(input), &mentions, MsgType::Markdown)
        });
    });
    group.finish();
}

fn bench_template(c: &mut Criterion) {
    let templates = Templates::compile(None, Some(("body.md.j2", BUILTIN_BODY)))
        .expect("the built-in template compiles");
    let spec = spec(Some(&templates));
    let mut group = c.benchmark_group("render_template");
    let n = 1_000;
    let input = alerts(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
        b.iter(|| render(black_box(&spec), black_box(input)));
    });
    group.finish();
}

fn bench_fill(c: &mut Criterion) {
    let spec = spec(None);
    let mut group = c.benchmark_group("render_fill");
    let n = 100_000;
    let input = fill_mix::mix(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
        b.iter(|| render(black_box(&spec), black_box(input)));
    });
    group.finish();
}

/// The same 100 000 alerts as `render/100000`, in Slack's dialect (mrkdwn, 8 000 characters).
fn bench_slack(c: &mut Criterion) {
    let spec = DigestSpec {
        max_bytes: sluice::digest::slack::MAX_CHARS,
        ..spec(None)
    };
    let mut group = c.benchmark_group("render_slack");
    let n = 100_000;
    let input = alerts(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
        b.iter(|| render_in(&Slack, black_box(&spec), black_box(input)));
    });
    group.finish();
}

/// `render/100000`'s input in Feishu's post dialect: what the shared plan and fit cost with a
/// post's escaping and measure (a card writes DingTalk's markdown, which `render` measures).
fn bench_feishu(c: &mut Criterion) {
    let spec = spec(None);
    let mut group = c.benchmark_group("render_feishu");
    let n = 100_000;
    let input = alerts(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
        b.iter(|| render_in(&Post, black_box(&spec), black_box(input)));
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_render,
    bench_render_wecom,
    bench_template,
    bench_fill,
    bench_slack,
    bench_feishu
);
criterion_main!(benches);
