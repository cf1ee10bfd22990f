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

/// When an event happened: an RFC 3339 string or Unix seconds (serialized untagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventTime {
    /// Seconds since the Unix epoch.
    Unix(i64),
    /// RFC 3339 (`2024-05-01T12:00:00Z`), passed through as given.
    Rfc3339(String),
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
