//! `[pools.NAME]`: several robots of one chat group acting as one destination.
//!
//! A pool is a lane of its own (one queue in the store, under the pool's name, and one task);
//! its members get no task and no queue of their own, so a member's send log is only ever driven
//! by the pool's task. Alerts and routes naming a member go to its pool ([`Config::destination`]).
//! Every member renders the same digest the same way, so a digest sealed for one member can be
//! sent again through another: they must share the provider, the msgtype and the keywords.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) robots: Vec<String>,
}

/// Fewest and most members of a pool.
pub const POOL_MEMBERS: std::ops::RangeInclusive<usize> = 2..=20;

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Member robots, in config order (the order ties are broken in).
    pub members: Vec<String>,
    /// The pool as a lane: its first member's settings (window, retention, max_pending, look,
    /// mentions) under the pool's name, without a webhook or secret, and with the members'
    /// limits summed for status.
    pub lane: Robot,
}

impl Pool {
    /// Whether `other` runs this pool exactly the same way, given each side's robots.
    pub fn same_as(
        &self,
        robots: &BTreeMap<String, Robot>,
        other: &Pool,
        other_robots: &BTreeMap<String, Robot>,
    ) -> bool {
        self.members == other.members
            && self.lane.same_as(&other.lane)
            && self
                .members
                .iter()
                .all(|m| match (robots.get(m), other_robots.get(m)) {
                    (Some(a), Some(b)) => a.same_as(b),
                    _ => false,
                })
    }
}

/// Whether `name` follows the robot-name rule: 1 to 64 letters, digits, '_' or '-'.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `[pools]` against the configured `robots` and builds each pool. Errors are
/// `(key: message)` strings.
pub(super) fn pools(
    raw: &BTreeMap<String, RawPool>,
    robots: &BTreeMap<String, Robot>,
) -> Result<BTreeMap<String, Pool>, String> {
    let configured = || robots.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let at = format!("pools.{name}");
        if !is_name(name) {
            return Err(format!(
                "{at}: a pool name is 1 to 64 letters, digits, '_' or '-'"
            ));
        }
        if robots.contains_key(name) {
            return Err(format!(
                "{at}: {name:?} is already a robot's name; a pool needs a name of its own"
            ));
        }
        if !POOL_MEMBERS.contains(&p.robots.len()) {
            return Err(format!(
                "{at}.robots: a pool has {} to {} robots, not {}",
                POOL_MEMBERS.start(),
                POOL_MEMBERS.end(),
                p.robots.len()
            ));
        }
        let mut members: Vec<&Robot> = Vec::new();
        for (i, m) in p.robots.iter().enumerate() {
            let key = format!("{at}.robots[{i}]");
            let Some(r) = robots.get(m) else {
                return Err(format!(
                    "{key}: {m:?} is not a configured robot; configured robots: {}",
                    configured()
                ));
            };
            if let Some(other) = owner.insert(m, name) {
                let why = if other == name {
                    "is listed twice".to_string()
                } else {
                    format!("is already in pool {other:?}; a robot is in at most one pool")
                };
                return Err(format!("{key}: {m:?} {why}"));
            }
            let first = members.first().copied().unwrap_or(r);
            if r.provider != first.provider {
                return Err(format!(
                    "{key}: {m:?} is a {} robot and {:?} a {} robot; a pool's robots share one provider, so that one dialect renders its digests",
                    r.provider.as_str(),
                    first.name,
                    first.provider.as_str()
                ));
            }
            if r.look.msgtype != first.look.msgtype || r.keywords != first.keywords {
                return Err(format!(
                    "{key}: {m:?} differs from {:?} in msgtype or keywords; a pool's robots send the same message, so they share both",
                    first.name
                ));
            }
            members.push(r);
        }
        let mut lane = members[0].clone();
        lane.name = name.clone();
        lane.webhook = None;
        lane.secret = None;
        lane.hook = None;
        lane.timing.rate_limit = members.iter().map(|r| r.timing.rate_limit).sum();
        out.insert(
            name.clone(),
            Pool {
                name: name.clone(),
                members: p.robots.clone(),
                lane,
            },
        );
    }
    Ok(out)
}

impl Config {
    /// The lane (queue and task) alerts naming `name` go to: a pool, the pool a member robot
    /// is in, or a robot of its own. `None`: neither a robot nor a pool.
    pub fn destination<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.pools.contains_key(name) {
            return Some(name);
        }
        if let Some(p) = self.pool_of(name) {
            return Some(&p.name);
        }
        self.robots.contains_key(name).then_some(name)
    }

    /// The pool `robot` is a member of.
    pub fn pool_of(&self, robot: &str) -> Option<&Pool> {
        self.pools
            .values()
            .find(|p| p.members.iter().any(|m| m == robot))
    }

    /// Every lane, by name: robots in no pool, and pools (as their [`Pool::lane`]).
    pub fn lanes(&self) -> BTreeMap<&str, &Robot> {
        let mut lanes: BTreeMap<&str, &Robot> = self
            .robots
            .iter()
            .filter(|(n, _)| self.pool_of(n).is_none())
            .map(|(n, r)| (n.as_str(), r))
            .collect();
        for (n, p) in &self.pools {
            lanes.insert(n, &p.lane);
        }
        lanes
    }

    /// Whether `name` has a lane (a task and a queue).
    pub fn is_lane(&self, name: &str) -> bool {
        self.pools.contains_key(name)
            || (self.robots.contains_key(name) && self.pool_of(name).is_none())
    }

    /// Whether the lane `name` runs the same way in `next` (a reload leaves it alone).
    pub fn same_lane(&self, name: &str, next: &Config) -> bool {
        match (self.pools.get(name), next.pools.get(name)) {
            (Some(a), Some(b)) => a.same_as(&self.robots, b, &next.robots),
            (None, None) => match (self.robots.get(name), next.robots.get(name)) {
                (Some(a), Some(b)) => a.same_as(b),
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROBOTS: &str = r#"
        [robots.a]
        webhook = "https://oapi.dingtalk.com/robot/send?access_token=a"
        [robots.b]
        webhook = "https://oapi.dingtalk.com/robot/send?access_token=b"
        [robots.c]
        webhook = "https://oapi.dingtalk.com/robot/send?access_token=c"
        rate_limit = 10
        [robots.log]
        provider = "console"
    "#;

    fn parse(pools: &str) -> Result<Config, String> {
        Config::parse(&format!("{ROBOTS}{pools}"), "test.toml", &|_| None)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_pool_is_a_lane_and_its_members_are_not() {
        let c =
            parse("[pools.oncall]\nrobots = [\"b\", \"a\", \"c\"]\n[[routes]]\nrobot = \"a\"\n")
                .unwrap();
        let p = &c.pools["oncall"];
        assert_eq!(p.members, ["b", "a", "c"], "config order is kept");
        assert_eq!(p.lane.name, "oncall");
        assert_eq!(p.lane.timing.rate_limit, 50, "the members' limits summed");
        assert!(p.lane.webhook.is_none());
        let lanes: Vec<&str> = c.lanes().keys().copied().collect();
        assert_eq!(lanes, ["log", "oncall"]);
        assert_eq!(c.destination("a"), Some("oncall"));
        assert_eq!(c.destination("oncall"), Some("oncall"));
        assert_eq!(c.destination("log"), Some("log"));
        assert_eq!(c.destination("nope"), None);
        assert!(c.is_lane("oncall") && !c.is_lane("a") && c.is_lane("log"));
        assert_eq!(c.robot_names(), "a, b, c, log; pools: oncall");
        // A route may name the pool itself.
        parse("[pools.oncall]\nrobots = [\"a\", \"b\"]\n[[routes]]\nrobot = \"oncall\"\n").unwrap();
    }

    #[test]
    fn pool_errors_name_the_key_and_the_expectation() {
        let cases = [
            (
                "[pools.oncall]\nrobots = [\"a\", \"b\", \"x\"]\n",
                "pools.oncall.robots[2]: \"x\" is not a configured robot; configured robots: a, b, c, log",
            ),
            (
                "[pools.oncall]\nrobots = [\"a\"]\n",
                "pools.oncall.robots: a pool has 2 to 20 robots, not 1",
            ),
            (
                "[pools.oncall]\nrobots = [\"a\", \"log\"]\n",
                "pools.oncall.robots[1]: \"log\" is a console robot and \"a\" a dingtalk robot; a pool's robots share one provider",
            ),
            (
                "[pools.oncall]\nrobots = [\"a\", \"a\"]\n",
                "pools.oncall.robots[1]: \"a\" is listed twice",
            ),
            (
                "[pools.p1]\nrobots = [\"a\", \"b\"]\n[pools.p2]\nrobots = [\"c\", \"b\"]\n",
                "pools.p2.robots[1]: \"b\" is already in pool \"p1\"; a robot is in at most one pool",
            ),
            (
                "[pools.a]\nrobots = [\"b\", \"c\"]\n",
                "pools.a: \"a\" is already a robot's name",
            ),
            (
                "[pools.\"on call\"]\nrobots = [\"b\", \"c\"]\n",
                "pools.on call: a pool name is 1 to 64 letters, digits, '_' or '-'",
            ),
            (
                "[pools.oncall]\nrobots = [\"a\", \"b\"]\nwindow = \"1s\"\n",
                "unknown field `window`",
            ),
        ];
        for (pools, want) in cases {
            let err = parse(pools).unwrap_err();
            assert!(err.contains(want), "{pools}\n  got: {err}\n want: {want}");
        }
        let keywords = "[robots.k]\nwebhook = \"https://oapi.dingtalk.com/robot/send?access_token=k\"\nkeywords = [\"告警\"]\n[pools.oncall]\nrobots = [\"a\", \"k\"]\n";
        let err = parse(keywords).unwrap_err();
        assert!(
            err.contains("pools.oncall.robots[1]: \"k\" differs from \"a\" in msgtype or keywords"),
            "{err}"
        );
    }

    #[test]
    fn a_pool_changes_when_its_members_or_their_tables_do() {
        let one = parse("[pools.oncall]\nrobots = [\"a\", \"b\"]\n").unwrap();
        let same = parse("[pools.oncall]\nrobots = [\"a\", \"b\"]\n").unwrap();
        let more = parse("[pools.oncall]\nrobots = [\"a\", \"b\", \"c\"]\n").unwrap();
        assert!(one.same_lane("oncall", &same));
        assert!(!one.same_lane("oncall", &more));
        assert!(!one.same_lane("oncall", &parse("").unwrap()));
        let b_changed = Config::parse(
            &format!(
                "{}\n[pools.oncall]\nrobots = [\"a\", \"b\"]\n",
                ROBOTS.replace("access_token=b", "access_token=b2")
            ),
            "test.toml",
            &|_| None,
        )
        .unwrap();
        assert!(!one.same_lane("oncall", &b_changed));
    }
}
