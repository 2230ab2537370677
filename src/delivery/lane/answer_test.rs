//! A test message asked for through the running lane (`RobotHandle::send_test`): answered by
//! the lane's own task, through the member's rate guard.

use super::*;

impl Lane {
    /// Answers a test message request through its member: refused without a permit or while
    /// the member is paused, else sent like a digest (counted and logged first) and its
    /// answer acted on as a digest's would be. `false`: the send was abandoned for shutdown.
    pub(super) async fn answer_test(
        &mut self,
        members: &mut [Member],
        memory: &mut decide::Memory,
        own: bool,
        fallback_after: Option<Duration>,
        req: Request,
    ) -> bool {
        let Request { member, answer } = req;
        let Some(m) = members.iter_mut().find(|m| m.name() == member) else {
            let lane = self.handle.config.name.clone();
            let _ = answer.send(Err(TestRefused::NotMember {
                robot: member,
                lane,
            }));
            return true;
        };
        let now = self.clock.now_ms();
        let timing = m.handle.config.timing.clone();
        let period_ms = timing.rate_period.as_millis() as i64;
        let in_period = |m: &Member, now: i64| {
            m.guard
                .log()
                .iter()
                .filter(|&&t| t > now - period_ms)
                .count()
        };
        let paused = m.paused_until.filter(|&t| t > now);
        let refused = if let Some(a) = m.away(now, fallback_after) {
            Some(TestRefused::Paused {
                robot: member.clone(),
                state: a.state,
                why: a.why,
                until_ms: Some(a.until),
            })
        } else if let Some(until) = paused {
            let why = m.handle.status().last_error.unwrap_or_default();
            Some(TestRefused::Paused {
                robot: member.clone(),
                state: m.paused_as,
                why,
                until_ms: Some(until),
            })
        } else if let Err(wait) = m.guard.acquire(now) {
            Some(TestRefused::NoPermit {
                robot: member.clone(),
                sends_in_period: in_period(m, now),
                rate_limit: timing.rate_limit,
                period: humantime::format_duration(timing.rate_period).to_string(),
                next_permit_ms: wait.as_millis() as i64,
            })
        } else {
            None
        };
        if let Some(r) = refused {
            tracing::info!(lane = %self.handle.config.name, robot = %member, "test message refused: {r}");
            let _ = answer.send(Err(r));
            return true;
        }
        let (title, text) = m.provider.ping_text(&m.handle.config.target());
        let message = m.provider.prepare(0, title, text, &Mention::default());
        let (outcome, done) = match self.attempt(m, own, 0, &message, now).await {
            Tried::Answered(outcome, done) => (outcome, done),
            Tried::Store(why) => {
                self.note_error(why.clone(), now);
                let _ = answer.send(Err(TestRefused::Store { robot: member, why }));
                return true;
            }
            Tried::Shutdown => return false,
        };
        let random = m.jitter.next();
        let next = self.after_answer(m, memory, &outcome, now, done, &timing, random);
        if let Some(r) = outcome.reason() {
            let said = if own {
                r.to_string()
            } else {
                format!("{member}: {r}")
            };
            self.note_trouble(m, own, &said, r, done);
        }
        tracing::info!(lane = %self.handle.config.name, robot = %member, answer = outcome.class(), "test message sent");
        show_state(m, &next, done);
        self.show_member(m, own);
        let sent = TestSent {
            robot: member,
            sends_in_period: in_period(m, done),
            rate_limit: timing.rate_limit,
            outcome,
        };
        let _ = answer.send(Ok(sent));
        true
    }
}
