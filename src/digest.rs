// TEMPORARY placeholder until the real module lands.
use crate::alert::{Alert, Severity};
pub struct DigestSpec<'a> { pub robot: &'a str, pub id: u64, pub keyword: Option<&'a str>, pub link: Option<&'a str>, pub max_bytes: usize }
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts { pub critical: u64, pub error: u64, pub warning: u64, pub info: u64, pub firing: u64, pub resolved: u64 }
#[derive(Debug, Clone)]
pub struct Rendered { pub title: String, pub text: String, pub total: usize, pub listed: usize, pub summarized: usize, pub counts: Counts }
pub fn render(spec: &DigestSpec, alerts: &[Alert]) -> Rendered {
    let mut text = String::new();
    let mut c = Counts::default();
    for a in alerts { if text.len() < 10000 { text.push_str(&format!("- {}\n", a.title)); } match a.severity { Severity::Critical => c.critical+=1, Severity::Error=>c.error+=1, Severity::Warning=>c.warning+=1, Severity::Info=>c.info+=1 } }
    text.push_str(&footer(spec.id, alerts.len()));
    Rendered { title: spec.robot.to_string(), text, total: alerts.len(), listed: 0, summarized: 0, counts: c }
}
pub fn footer(id: u64, n: usize) -> String { if n == 1 { format!("sluice digest #{id} · 1 alert") } else { format!("sluice digest #{id} · {n} alerts") } }
pub fn cut_utf8(s: &str, max: usize) -> &str { let mut i = max.min(s.len()); while !s.is_char_boundary(i) { i -= 1; } &s[..i] }
