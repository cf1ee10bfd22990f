//! JSON shapes exchanged by `rdeploy serve` and `rdeploy-agent`: upload reply, progress event, boot decision.
//!
//! Both sides depend on these types and nothing else of each other. The crate has no clock: the
//! sender of an event supplies its time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The answer to `POST /upload` with `Accept: application/json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadReply {
    /// The profile the inventory matched.
    pub profile: String,
    /// Bound variables merged with the allocated CMDB entry: the script's `var`.
    pub var: serde_json::Map<String, serde_json::Value>,
    /// The profile's `.configure` script (Rhai source).
    pub script: String,
    /// The node id the server filed the upload under (`/nodes/{id}/events`, `/nodes/{id}/log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's secret token for this install: the agent sends it back on every later
    /// call (`Authorization: Bearer <token>`). A new upload gets a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A provisioning step the agent reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Hardware detection.
    Detect,
    /// Inventory upload and match.
    Upload,
    /// Running the configure script.
    Configure,
    /// Installing the role tree.
    InstallRole,
    /// Installing the boot loader.
    Bootloader,
    /// Asking the server for local boot.
    Localboot,
    /// The whole provisioning run.
    Finish,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step began.
    Started,
    /// The step finished well.
    Succeeded,
    /// The step failed; the run stops.
    Failed,
}

/// When an event happened: an RFC 3339 string or Unix seconds (serialized untagged). Read
/// only when it is a time: Unix seconds from 0 to the end of year 9999, or an RFC 3339
/// date and time with its offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventTime {
    /// Seconds since the Unix epoch.
    Unix(i64),
    /// RFC 3339 (`2024-05-01T12:00:00Z`), passed through as given.
    Rfc3339(String),
}

/// The last second of year 9999, in Unix seconds.
const MAX_UNIX: i64 = 253_402_300_799;

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventTime, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Unix(i64),
            Text(String),
            Other(serde_json::Value),
        }
        match Raw::deserialize(d)? {
            Raw::Unix(s) if (0..=MAX_UNIX).contains(&s) => Ok(EventTime::Unix(s)),
            Raw::Text(t) if is_rfc3339(&t) => Ok(EventTime::Rfc3339(t)),
            Raw::Unix(s) => Err(D::Error::custom(format!(
                "time {s} is not a time: Unix seconds go from 0 to {MAX_UNIX} (year 9999)"
            ))),
            Raw::Text(t) => Err(D::Error::custom(format!(
                "time {:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z",
                t.chars().take(64).collect::<String>()
            ))),
            Raw::Other(v) => Err(D::Error::custom(format!(
                "time {} is neither Unix seconds nor an RFC 3339 string",
                v.to_string().chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// Whether `t` is an RFC 3339 date and time: `YYYY-MM-DDTHH:MM:SS`, optional fraction,
/// then `Z` or `±HH:MM` (`t`/`z` and a space for `T` accepted, as RFC 3339 allows).
pub fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let num = |from: usize, len: usize, max: u32| -> Option<u32> {
        let part = t.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|n| *n <= max)
    };
    let days_in = |y: u32, m: u32| match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let date = (|| {
        let y = num(0, 4, 9999)?;
        let m = num(5, 2, 12).filter(|m| *m >= 1)?;
        let d = num(8, 2, 31).filter(|d| *d >= 1 && *d <= days_in(y, m))?;
        num(11, 2, 23)?;
        num(14, 2, 59)?;
        num(17, 2, 60)?;
        Some(d)
    })();
    if date.is_none()
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let offset = &rest[1..];
            let h = offset.get(0..2).and_then(|h| h.parse::<u32>().ok());
            let m = offset.get(3..5).and_then(|m| m.parse::<u32>().ok());
            offset
                .bytes()
                .enumerate()
                .all(|(i, c)| i == 2 || c.is_ascii_digit())
                && h.is_some_and(|h| h <= 23)
                && m.is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// One progress report from an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The step.
    pub step: Step,
    /// Where it stands.
    pub status: StepStatus,
    /// One line for a person.
    #[serde(default)]
    pub message: String,
    /// When, by the agent's clock.
    pub time: EventTime,
    /// The node (boot MAC) when the endpoint does not say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The agent's log, sent with a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// A node's place in the life cycle (`discovered → matched → configuring → installing → installed`, or `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Inventory received.
    Discovered,
    /// Profile and CMDB entry allocated.
    Matched,
    /// The configure script runs.
    Configuring,
    /// The role tree and boot loader are being installed.
    Installing,
    /// Done; boot flipped to local.
    Installed,
    /// A step failed.
    Failed,
}

impl ProgressEvent {
    /// The life-cycle state this event moves its node to, if any.
    pub fn node_state(&self) -> Option<NodeState> {
        match (self.step, self.status) {
            (_, StepStatus::Failed) => Some(NodeState::Failed),
            (Step::Configure, StepStatus::Started) => Some(NodeState::Configuring),
            (Step::InstallRole | Step::Bootloader, StepStatus::Started) => {
                Some(NodeState::Installing)
            }
            (Step::Finish, StepStatus::Succeeded) => Some(NodeState::Installed),
            _ => None,
        }
    }
}

/// What a node boots next.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum BootDecision {
    /// The rdeploy kernel and initramfs (provisioning).
    Install,
    /// The local disk.
    Local,
    /// Another named boot profile (rescue, memtest, ...).
    Profile {
        /// Boot profile name.
        name: String,
    },
}

/// A boot profile name that is empty or could escape a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot target {0:?} is not `install`, `local` or a profile name of letters, digits, '.', '_' and '-'")]
pub struct BadBootTarget(pub String);

impl FromStr for BootDecision {
    type Err = BadBootTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "install" => Ok(Self::Install),
            "local" => Ok(Self::Local),
            name => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && !name.starts_with('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if ok {
                    Ok(Self::Profile {
                        name: name.to_owned(),
                    })
                } else {
                    Err(BadBootTarget(name.to_owned()))
                }
            }
        }
    }
}

impl fmt::Display for BootDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Install => f.write_str("install"),
            Self::Local => f.write_str("local"),
            Self::Profile { name } => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_on_the_wire() -> Result<(), serde_json::Error> {
        let ev = ProgressEvent {
            step: Step::InstallRole,
            status: StepStatus::Started,
            message: "rsync".into(),
            time: EventTime::Unix(1_700_000_000),
            node: None,
            log: None,
        };
        assert_eq!(
            serde_json::to_value(&ev)?,
            json!({"step": "install_role", "status": "started", "message": "rsync", "time": 1_700_000_000})
        );
        let back: ProgressEvent = serde_json::from_value(
            json!({"step": "finish", "status": "succeeded", "time": "2024-05-01T12:00:00Z"}),
        )?;
        assert_eq!(back.time, EventTime::Rfc3339("2024-05-01T12:00:00Z".into()));
        assert_eq!(back.node_state(), Some(NodeState::Installed));
        assert_eq!(
            serde_json::to_value(BootDecision::Local)?,
            json!({"target": "local"})
        );
        assert_eq!(
            serde_json::to_value(BootDecision::Profile {
                name: "rescue".into()
            })?,
            json!({"target": "profile", "name": "rescue"})
        );
        let reply: UploadReply = serde_json::from_value(
            json!({"profile": "hp", "var": {"ip": "10.0.0.5"}, "script": "run(\"true\");"}),
        )?;
        assert_eq!(reply.var.get("ip"), Some(&json!("10.0.0.5")));
        Ok(())
    }

    #[test]
    fn event_times_must_be_times() {
        let time = |v: serde_json::Value| serde_json::from_value::<EventTime>(v);
        assert_eq!(time(json!(0)).ok(), Some(EventTime::Unix(0)));
        assert!(time(json!("2024-05-01T12:00:00Z")).is_ok());
        assert!(time(json!("2024-02-29T23:59:60.123+05:30")).is_ok());
        assert!(time(json!("2024-05-01 12:00:00-01:00")).is_ok());
        for bad in [
            json!("yesterday"),
            json!("2023-02-29T00:00:00Z"),
            json!("2024-13-01T00:00:00Z"),
            json!("2024-05-01T24:00:00Z"),
            json!("2024-05-01T12:00:00"),
            json!("2024-05-01T12:00:00.Z"),
            json!("2024-05-01T12:00:00+5:30"),
            json!("２０２４-05-01T12:00:00Z"),
            json!(-1),
            json!(1e12),
            json!(MAX_UNIX + 1),
            json!(null),
            json!([1]),
        ] {
            assert!(time(bad.clone()).is_err(), "{bad}");
        }
        let e = time(json!("yesterday"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
    }

    #[test]
    fn boot_targets_parse_and_refuse_paths() {
        assert_eq!("local".parse(), Ok(BootDecision::Local));
        assert_eq!(
            "rescue".parse(),
            Ok(BootDecision::Profile {
                name: "rescue".into()
            })
        );
        assert!("../etc".parse::<BootDecision>().is_err());
        assert!("".parse::<BootDecision>().is_err());
        assert_eq!(BootDecision::Install.to_string(), "install");
    }
}
