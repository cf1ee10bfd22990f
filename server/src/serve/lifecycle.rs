//! The node life cycle as data: one table of the legal moves (which transition may happen
//! to a node in which state, and the state it leaves the node in), and [`step`], the pure
//! function that applies a transition to a record or refuses it with [`Illegal`].
//!
//! No IO and no clock here: the time of a change is a parameter. [`super::nodes`] stores
//! what `step` returns; an illegal transition changes nothing and is answered
//! `409 illegal_transition` (`error.rs`). The same table is in `docs/http-api.md`
//! (a test keeps the two equal).

use std::fmt;

use rdeploy_configure::tree_wire::{TreeAction, TreeReport, TreeStatus};
use rdeploy_configure::wire::ProgressEvent;

use super::record::{BootTarget, Event, Node, NodeState};
use NodeState::{Configuring, Discovered, Failed, Installed, Installing, Matched};
use Verdict::{No, Reinstall, Stay, To};
use Why::{AfterFailure, Backwards, Finished, NoProfile, NotDeployed, UploadOnly};

/// Every state, in life-cycle order (the table's columns).
pub const ALL_STATES: [NodeState; 6] = [
    NodeState::Discovered,
    NodeState::Matched,
    NodeState::Configuring,
    NodeState::Installing,
    NodeState::Installed,
    NodeState::Failed,
];

/// The state's name as it appears on the wire.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Discovered => "discovered",
        NodeState::Matched => "matched",
        NodeState::Configuring => "configuring",
        NodeState::Installing => "installing",
        NodeState::Installed => "installed",
        NodeState::Failed => "failed",
    }
}

/// An install under way (it holds an install slot).
pub fn in_progress(s: NodeState) -> bool {
    matches!(
        s,
        NodeState::Matched | NodeState::Configuring | NodeState::Installing
    )
}

/// Something that happens to a node.
#[derive(Debug, Clone)]
pub enum Transition {
    /// An inventory arrived (a new install attempt).
    Discovered,
    /// The upload got a profile and CMDB entry.
    Matched {
        profile: String,
        var: serde_json::Map<String, serde_json::Value>,
        /// The SHA-256 of the node's new token (a re-install gets a new one).
        token_sha256: Option<String>,
    },
    /// The upload got nothing (no match, quota, CMDB).
    Refused { code: String, message: String },
    /// The install failed (`failure=<profile>` with the inventory).
    Failed { message: String },
    /// An agent's progress report (`POST /nodes/{id}/events`); it moves the node to
    /// [`ProgressEvent::node_state`], if any.
    Progress(ProgressEvent),
    /// PXE Manager's `localboot`: the next boot is `local`, and an install under way is done.
    LocalBoot { why: String },
    /// An operator (or PXE Pilot, OMF) changed the next boot.
    Boot { target: BootTarget, why: String },
    /// Something an operator should look at.
    Alert { message: String },
    /// The agent uploaded its log.
    Log { message: String },
    /// A role tree install or upgrade began or ended (event `install` or `upgrade`).
    Tree(TreeReport),
}

/// A transition's row in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Upload,
    Matched,
    Refused,
    Failure,
    /// A progress report that moves no state (`detect/started`, `finish/started`, ...).
    Progress,
    /// `configure/started`.
    ToConfiguring,
    /// `install_role/started`, `bootloader/started`.
    ToInstalling,
    /// `finish/succeeded`.
    ToInstalled,
    /// Any `*/failed`.
    ToFailed,
    LocalBoot,
    Boot,
    Alert,
    Log,
    TreeInstall,
    TreeUpgrade,
}

/// Why a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An upload from an installed node whose next boot is not `install`.
    AskReinstall,
    /// The allocation's outcome belongs to the upload that just discovered the node.
    UploadOnly,
    /// The node has no profile: nothing to progress, nothing to install.
    NoProfile,
    /// The install moves forward only.
    Backwards,
    /// The install failed; only a new upload starts another.
    AfterFailure,
    /// Installed: agent reports no longer move the node.
    Finished,
    /// Upgrades come from deployed nodes.
    NotDeployed,
}

impl Why {
    /// Its stable name (`reason` in a `409 illegal_transition` body, and the table).
    pub fn code(self) -> &'static str {
        match self {
            Why::AskReinstall => "reinstall_not_asked",
            Why::UploadOnly => "upload_only",
            Why::NoProfile => "no_profile",
            Why::Backwards => "backwards",
            Why::AfterFailure => "after_failure",
            Why::Finished => "installed",
            Why::NotDeployed => "not_deployed",
        }
    }

    /// What to do about it, for node `id`.
    fn advice(self, id: &str) -> String {
        match self {
            Why::AskReinstall => format!(
                "an installed node installs again only when an operator asks for it (rdeploy nextboot {id} install)"
            ),
            Why::UploadOnly => {
                "a profile is given or refused only to the upload that just discovered the node".into()
            }
            Why::NoProfile => {
                "the node has no profile yet: its agent must upload its inventory first".into()
            }
            Why::Backwards => "an install only moves forward (matched → configuring → installing → installed); a new attempt starts with an upload".into(),
            Why::AfterFailure => {
                "the install failed: a new attempt starts with an upload of the inventory".into()
            }
            Why::Finished => format!(
                "agent reports no longer change an installed node; a new install must be asked for (rdeploy nextboot {id} install)"
            ),
            Why::NotDeployed => "only a deployed node upgrades its role tree (installed, or matched by an install that never reported its end)".into(),
        }
    }
}

/// One cell of the table: what a transition does to a node in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Legal; the state stays (an event, or an idempotent repeat).
    Stay,
    /// Legal; the node enters this state.
    To(NodeState),
    /// Legal only when the node's next boot is `install` (an operator asked for a reinstall):
    /// the node enters `discovered`; refused otherwise ([`Why::AskReinstall`]).
    Reinstall,
    /// Refused.
    No(Why),
}

/// The legal moves: one row per kind of transition, one column per state, in the order of
/// [`ALL_STATES`].
#[rustfmt::skip]
pub fn row(kind: Kind) -> [Verdict; 6] {
    match kind {
        //                      discovered        matched           configuring       installing        installed        failed
        Kind::Upload        => [Stay,             To(Discovered),   To(Discovered),   To(Discovered),   Reinstall,       To(Discovered)],
        Kind::Matched       => [To(Matched),      No(UploadOnly),   No(UploadOnly),   No(UploadOnly),   No(UploadOnly),  No(UploadOnly)],
        Kind::Refused       => [Stay,             No(UploadOnly),   No(UploadOnly),   No(UploadOnly),   No(UploadOnly),  No(UploadOnly)],
        Kind::Failure       => [To(Failed),       To(Failed),       To(Failed),       To(Failed),       No(Finished),    Stay],
        Kind::Progress      => [Stay,             Stay,             Stay,             Stay,             Stay,            Stay],
        Kind::ToConfiguring => [No(NoProfile),    To(Configuring),  Stay,             No(Backwards),    No(Finished),    No(AfterFailure)],
        Kind::ToInstalling  => [No(NoProfile),    To(Installing),   To(Installing),   Stay,             No(Finished),    No(AfterFailure)],
        Kind::ToInstalled   => [No(NoProfile),    To(Installed),    To(Installed),    To(Installed),    Stay,            No(AfterFailure)],
        Kind::ToFailed      => [To(Failed),       To(Failed),       To(Failed),       To(Failed),       No(Finished),    Stay],
        Kind::LocalBoot     => [Stay,             To(Installed),    To(Installed),    To(Installed),    Stay,            Stay],
        Kind::Boot          => [Stay,             Stay,             Stay,             Stay,             Stay,            Stay],
        Kind::Alert         => [Stay,             Stay,             Stay,             Stay,             Stay,            Stay],
        Kind::Log           => [Stay,             Stay,             Stay,             Stay,             Stay,            Stay],
        Kind::TreeInstall   => [No(NoProfile),    Stay,             Stay,             Stay,             No(Finished),    No(AfterFailure)],
        Kind::TreeUpgrade   => [No(NotDeployed),  Stay,             No(NotDeployed),  No(NotDeployed),  Stay,            No(NotDeployed)],
    }
}

/// The table's cell for a transition kind and a state.
pub fn verdict(kind: Kind, state: NodeState) -> Verdict {
    let [discovered, matched, configuring, installing, installed, failed] = row(kind);
    match state {
        Discovered => discovered,
        Matched => matched,
        Configuring => configuring,
        Installing => installing,
        Installed => installed,
        Failed => failed,
    }
}

/// A transition the table refuses for the node's state; the record is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Illegal {
    /// The node's id.
    pub node: String,
    /// Its state.
    pub state: NodeState,
    /// Its next boot.
    pub boot: BootTarget,
    /// The refused move, as a person reads it (`progress configure/started → configuring`).
    pub transition: String,
    pub why: Why,
}

impl fmt::Display for Illegal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} is {}: {} refused: {}",
            self.node,
            state_name(self.state),
            self.transition,
            self.why.advice(&self.node)
        )
    }
}

impl std::error::Error for Illegal {}

impl Transition {
    /// Its row in the table.
    pub fn kind(&self) -> Kind {
        match self {
            Transition::Discovered => Kind::Upload,
            Transition::Matched { .. } => Kind::Matched,
            Transition::Refused { .. } => Kind::Refused,
            Transition::Failed { .. } => Kind::Failure,
            Transition::Progress(ev) => match ev.node_state() {
                None => Kind::Progress,
                Some(Configuring) => Kind::ToConfiguring,
                Some(Installing) => Kind::ToInstalling,
                Some(Installed) => Kind::ToInstalled,
                Some(Failed) => Kind::ToFailed,
                // No report moves a node back to the start: were one to, it would move
                // nothing.
                Some(Discovered | Matched) => Kind::Progress,
            },
            Transition::LocalBoot { .. } => Kind::LocalBoot,
            Transition::Boot { .. } => Kind::Boot,
            Transition::Alert { .. } => Kind::Alert,
            Transition::Log { .. } => Kind::Log,
            Transition::Tree(r) => match r.action {
                TreeAction::Install => Kind::TreeInstall,
                TreeAction::Upgrade => Kind::TreeUpgrade,
            },
        }
    }

    /// The move as a person reads it, for refusals.
    pub fn describe(&self) -> String {
        match self {
            Transition::Discovered => "upload (a new install)".into(),
            Transition::Matched { profile, .. } => format!("match to profile {profile}"),
            Transition::Refused { code, .. } => format!("upload refused ({code})"),
            Transition::Failed { .. } => "failure report".into(),
            Transition::Progress(ev) => {
                let to = ev
                    .node_state()
                    .map(|s| format!(" → {}", state_name(s)))
                    .unwrap_or_default();
                format!(
                    "progress {}/{}{to}",
                    wire_name(ev.step),
                    wire_name(ev.status)
                )
            }
            Transition::LocalBoot { .. } => "localboot".into(),
            Transition::Boot { target, .. } => format!("next boot {target}"),
            Transition::Alert { .. } => "alert".into(),
            Transition::Log { .. } => "log".into(),
            Transition::Tree(r) => format!(
                "{} report {} {} ({})",
                r.action, r.role, r.version, r.status
            ),
        }
    }
}

/// Whether `t` is legal for `node`: `Ok(Some(state))` when it moves the node to another
/// state, `Ok(None)` when the state stays.
pub fn check(node: &Node, t: &Transition) -> Result<Option<NodeState>, Illegal> {
    let refuse = |why| Illegal {
        node: node.id.clone(),
        state: node.state,
        boot: node.boot.clone(),
        transition: t.describe(),
        why,
    };
    match verdict(t.kind(), node.state) {
        Stay => Ok(None),
        To(s) if s == node.state => Ok(None),
        To(s) => Ok(Some(s)),
        Reinstall if node.boot == BootTarget::Install => Ok(Some(Discovered)),
        Reinstall => Err(refuse(Why::AskReinstall)),
        No(why) => Err(refuse(why)),
    }
}

/// Applies `t` to `node` at time `at` (RFC 3339), or refuses it and leaves `node` untouched.
///
/// Entering `installed` makes the next boot `local` (the end of the re-install loop).
pub fn step(node: &mut Node, t: Transition, at: &str) -> Result<(), Illegal> {
    let entering = check(node, &t)?;
    record(node, t, entering, at);
    if let Some(s) = entering {
        node.enter(s, at);
        if s == Installed {
            node.boot = BootTarget::Local;
            node.event(event(
                at,
                "boot",
                "install finished: next boot is local".into(),
            ));
        }
    }
    Ok(())
}

fn event(at: &str, kind: &str, message: String) -> Event {
    Event {
        at: at.to_owned(),
        kind: kind.to_owned(),
        step: None,
        status: None,
        message,
        agent_time: None,
    }
}

/// The wire name of a serde enum value (`install_role`, `succeeded`).
fn wire_name<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Most characters of an agent's log kept in its failure event.
const LOG_TAIL: usize = 4000;

/// What a legal transition records (its events, profile, boot, role), the state aside.
fn record(node: &mut Node, t: Transition, entering: Option<NodeState>, at: &str) {
    match t {
        Transition::Discovered => node.event(event(at, "upload", "inventory received".into())),
        Transition::Matched {
            profile,
            var,
            token_sha256,
        } => {
            let ip = var
                .get("ip")
                .and_then(|v| v.as_str())
                .map(|s| format!(", ip {s}"))
                .unwrap_or_default();
            node.event(event(at, "matched", format!("profile {profile}{ip}")));
            node.profile = Some(profile);
            node.var = Some(var);
            node.token_sha256 = token_sha256;
        }
        Transition::Refused { code, message } => {
            node.event(event(at, "refused", format!("{code}: {message}")));
        }
        Transition::Failed { message } => node.event(event(at, "failure", message)),
        Transition::Progress(ev) => {
            let mut message = ev.message;
            if let Some(log) = &ev.log {
                let skip = log.chars().count().saturating_sub(LOG_TAIL);
                let tail: String = log.chars().skip(skip).collect();
                message = format!("{message}\n--- log (tail) ---\n{tail}");
            }
            node.event(Event {
                at: at.to_owned(),
                kind: "progress".into(),
                step: Some(wire_name(ev.step)),
                status: Some(wire_name(ev.status)),
                message,
                agent_time: serde_json::to_value(&ev.time).ok(),
            });
        }
        Transition::LocalBoot { why } => {
            node.event(event(at, "boot", format!("next boot: local ({why})")));
            node.boot = BootTarget::Local;
            if entering == Some(Installed) {
                // The server's own record of the PXE Manager call that ended the install.
                node.event(Event {
                    at: at.to_owned(),
                    kind: "progress".into(),
                    step: Some("localboot".into()),
                    status: Some("succeeded".into()),
                    message: why,
                    agent_time: None,
                });
            }
        }
        Transition::Boot { target, why } => {
            node.event(event(at, "boot", format!("next boot: {target} ({why})")));
            node.boot = target;
        }
        Transition::Alert { message } => node.event(event(at, "alert", message)),
        Transition::Log { message } => node.event(event(at, "log", message)),
        Transition::Tree(r) => {
            let from = r
                .from
                .as_deref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default();
            let mut message = format!("{} {}{from} to {}", r.action, r.role, r.version);
            if r.status != TreeStatus::Started {
                message.push_str(&format!(
                    ": {} bytes transferred of {}, {} changes",
                    r.bytes, r.tree_bytes, r.changes
                ));
            }
            if !r.message.is_empty() {
                message.push_str(&format!(" ({})", r.message));
            }
            node.event(Event {
                at: at.to_owned(),
                kind: r.action.to_string(),
                step: None,
                status: Some(r.status.to_string()),
                message,
                agent_time: None,
            });
            if r.status == TreeStatus::Succeeded {
                node.role = Some(r.role);
                node.version = Some(r.version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::identity::Identity;
    use crate::serve::record::StateChange;
    use rdeploy_configure::wire::{EventTime, Step, StepStatus};

    type Res = Result<(), Box<dyn std::error::Error>>;

    const BEFORE: &str = "2026-01-01T00:00:00Z";
    const AT: &str = "2026-01-01T00:05:00Z";

    /// A row's name in the tables below and in `docs/http-api.md`.
    fn kind_name(k: Kind) -> &'static str {
        match k {
            Kind::Upload => "upload",
            Kind::Matched => "matched",
            Kind::Refused => "refused",
            Kind::Failure => "failure report",
            Kind::Progress => "progress, no state",
            Kind::ToConfiguring => "progress → configuring",
            Kind::ToInstalling => "progress → installing",
            Kind::ToInstalled => "progress → installed",
            Kind::ToFailed => "progress → failed",
            Kind::LocalBoot => "localboot",
            Kind::Boot => "boot",
            Kind::Alert => "alert",
            Kind::Log => "log",
            Kind::TreeInstall => "tree install",
            Kind::TreeUpgrade => "tree upgrade",
        }
    }

    /// Every kind, in the table's order.
    const KINDS: [Kind; 15] = [
        Kind::Upload,
        Kind::Matched,
        Kind::Refused,
        Kind::Failure,
        Kind::Progress,
        Kind::ToConfiguring,
        Kind::ToInstalling,
        Kind::ToInstalled,
        Kind::ToFailed,
        Kind::LocalBoot,
        Kind::Boot,
        Kind::Alert,
        Kind::Log,
        Kind::TreeInstall,
        Kind::TreeUpgrade,
    ];

    /// What the table must say, written out by hand (not derived from `row`): the state each
    /// transition leaves a node in, or `refused`. The nodes boot `local` (an installed node
    /// uploading with `install` as its next boot is tested on its own).
    #[rustfmt::skip]
    const EXPECTED: [(&str, [&str; 6]); 15] = [
        //                           discovered    matched       configuring   installing    installed      failed
        ("upload",                 ["discovered", "discovered", "discovered", "discovered", "refused",     "discovered"]),
        ("matched",                ["matched",    "refused",    "refused",    "refused",    "refused",     "refused"]),
        ("refused",                ["discovered", "refused",    "refused",    "refused",    "refused",     "refused"]),
        ("failure report",         ["failed",     "failed",     "failed",     "failed",     "refused",     "failed"]),
        ("progress, no state",     ["discovered", "matched",    "configuring","installing", "installed",   "failed"]),
        ("progress → configuring", ["refused",    "configuring","configuring","refused",    "refused",     "refused"]),
        ("progress → installing",  ["refused",    "installing", "installing", "installing", "refused",     "refused"]),
        ("progress → installed",   ["refused",    "installed",  "installed",  "installed",  "installed",   "refused"]),
        ("progress → failed",      ["failed",     "failed",     "failed",     "failed",     "refused",     "failed"]),
        ("localboot",              ["discovered", "installed",  "installed",  "installed",  "installed",   "failed"]),
        ("boot",                   ["discovered", "matched",    "configuring","installing", "installed",   "failed"]),
        ("alert",                  ["discovered", "matched",    "configuring","installing", "installed",   "failed"]),
        ("log",                    ["discovered", "matched",    "configuring","installing", "installed",   "failed"]),
        ("tree install",           ["refused",    "matched",    "configuring","installing", "refused",     "refused"]),
        ("tree upgrade",           ["refused",    "matched",    "refused",    "refused",    "installed",   "refused"]),
    ];

    fn identity() -> Identity {
        Identity {
            name: "KVM-S1-52-54-00-aa-00-01".into(),
            macs: vec!["52:54:00:aa:00:01".into()],
            ..Identity::default()
        }
    }

    /// A record that reached `state` (with a profile past `discovered`; booting `local`).
    fn node_in(state: NodeState) -> Node {
        let mut n = Node::new(&identity(), BEFORE);
        if state != Discovered {
            n.profile = Some("vm".into());
        }
        n.enter(state, BEFORE);
        n.boot = BootTarget::Local;
        n
    }

    fn progress(step: Step, status: StepStatus) -> Transition {
        Transition::Progress(ProgressEvent {
            step,
            status,
            message: String::new(),
            time: EventTime::Unix(1_700_000_000),
            node: None,
            log: None,
        })
    }

    fn tree(action: TreeAction, status: TreeStatus) -> Transition {
        Transition::Tree(TreeReport {
            action,
            status,
            role: "base".into(),
            from: (action == TreeAction::Upgrade).then(|| "1".to_owned()),
            version: "2".into(),
            bytes: 10,
            tree_bytes: 100,
            changes: 3,
            message: String::new(),
        })
    }

    /// One transition of each row of [`EXPECTED`], by name.
    fn sample(name: &str) -> Option<Transition> {
        let mut var = serde_json::Map::new();
        var.insert("ip".into(), "10.0.0.1".into());
        Some(match name {
            "upload" => Transition::Discovered,
            "matched" => Transition::Matched {
                profile: "vm".into(),
                var,
                token_sha256: None,
            },
            "refused" => Transition::Refused {
                code: "no_match".into(),
                message: "nothing matches".into(),
            },
            "failure report" => Transition::Failed {
                message: "failure reported for profile 'vm'".into(),
            },
            "progress, no state" => progress(Step::Finish, StepStatus::Started),
            "progress → configuring" => progress(Step::Configure, StepStatus::Started),
            "progress → installing" => progress(Step::InstallRole, StepStatus::Started),
            "progress → installed" => progress(Step::Finish, StepStatus::Succeeded),
            "progress → failed" => progress(Step::Configure, StepStatus::Failed),
            "localboot" => Transition::LocalBoot {
                why: "localboot for 52:54:00:aa:00:01".into(),
            },
            "boot" => Transition::Boot {
                target: BootTarget::Install,
                why: "operator".into(),
            },
            "alert" => Transition::Alert {
                message: "look".into(),
            },
            "log" => Transition::Log {
                message: "log received".into(),
            },
            "tree install" => tree(TreeAction::Install, TreeStatus::Succeeded),
            "tree upgrade" => tree(TreeAction::Upgrade, TreeStatus::Succeeded),
            _ => return None,
        })
    }

    fn parse_state(name: &str) -> Option<NodeState> {
        ALL_STATES.into_iter().find(|s| state_name(*s) == name)
    }

    #[test]
    fn the_rows_are_every_kind_once_in_order() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(EXPECTED[i].0, kind_name(*k));
            assert_eq!(KINDS.iter().filter(|o| *o == k).count(), 1);
        }
    }

    #[test]
    fn every_state_and_transition_does_what_the_written_table_says() -> Result<(), String> {
        for (name, row) in EXPECTED {
            for (state, want) in ALL_STATES.into_iter().zip(row) {
                let t = sample(name).ok_or(format!("no sample for {name}"))?;
                assert_eq!(kind_name(t.kind()), name, "{t:?}");
                let before = node_in(state);
                let mut node = before.clone();
                let description = t.describe();
                let cell = format!("{name} from {}", state_name(state));
                match (step(&mut node, t, AT), want) {
                    (Err(illegal), "refused") => {
                        assert_eq!(node, before, "{cell}: a refusal changes nothing");
                        assert_eq!(illegal.node, before.id, "{cell}");
                        assert_eq!(illegal.state, state, "{cell}");
                        assert_eq!(illegal.transition, description, "{cell}");
                    }
                    (Err(illegal), want) => {
                        return Err(format!("{cell}: refused ({illegal}), expected {want}"))
                    }
                    (Ok(()), "refused") => {
                        return Err(format!(
                            "{cell}: accepted ({}), expected a refusal",
                            state_name(node.state)
                        ))
                    }
                    (Ok(()), want) => {
                        let want = parse_state(want).ok_or(format!("{cell}: bad cell {want}"))?;
                        assert_eq!(node.state, want, "{cell}");
                        assert!(node.events.len() > before.events.len(), "{cell}: no event");
                        if want == state {
                            assert_eq!(node.history, before.history, "{cell}");
                        } else {
                            assert_eq!(
                                node.history.last(),
                                Some(&StateChange {
                                    state: want,
                                    at: AT.into()
                                }),
                                "{cell}"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn an_installed_node_uploads_again_only_when_a_reinstall_was_asked_for() -> Result<(), Illegal>
    {
        let mut node = node_in(Installed);
        let refused = step(&mut node, Transition::Discovered, AT);
        assert!(
            matches!(
                &refused,
                Err(Illegal {
                    why: Why::AskReinstall,
                    boot: BootTarget::Local,
                    ..
                })
            ),
            "{refused:?}"
        );
        node.boot = BootTarget::Install;
        step(&mut node, Transition::Discovered, AT)?;
        assert_eq!(node.state, Discovered);
        Ok(())
    }

    /// The reported bug: after `finish/succeeded` a stray `configure/started` moved the node
    /// back to `configuring`, out of the re-install guard's reach.
    #[test]
    fn installed_then_configure_started_is_refused_and_changes_nothing() -> Res {
        let mut node = node_in(Matched);
        node.boot = BootTarget::Install;
        step(&mut node, progress(Step::Finish, StepStatus::Succeeded), AT)?;
        assert_eq!((node.state, &node.boot), (Installed, &BootTarget::Local));
        let before = node.clone();
        let refused = step(
            &mut node,
            progress(Step::Configure, StepStatus::Started),
            AT,
        );
        assert_eq!(node, before);
        let illegal = refused
            .err()
            .ok_or("configure/started on an installed node was accepted")?;
        assert_eq!(illegal.state, Installed);
        assert_eq!(
            illegal.transition,
            "progress configure/started → configuring"
        );
        assert_eq!(
            illegal.to_string(),
            "node KVM-S1-52-54-00-aa-00-01 is installed: progress configure/started → configuring refused: agent reports no longer change an installed node; a new install must be asked for (rdeploy nextboot KVM-S1-52-54-00-aa-00-01 install)"
        );
        // The upload guard still holds.
        assert!(check(&node, &Transition::Discovered).is_err());
        Ok(())
    }

    /// What `rdeploy-agent run` sends, in order (with the server's `localboot` where the
    /// agent calls it), is accepted and ends `installed`, booting `local`.
    #[test]
    fn the_real_agent_run_is_legal() -> Res {
        use Step::*;
        use StepStatus::*;
        let mut node = Node::new(&identity(), BEFORE);
        step(&mut node, Transition::Discovered, AT)?;
        step(&mut node, sample("matched").ok_or("no sample")?, AT)?;
        let mut script = vec![
            progress(Detect, Started),
            progress(Detect, Succeeded),
            progress(Upload, Started),
            progress(Upload, Succeeded),
            progress(Configure, Started),
            progress(Configure, Succeeded),
            progress(InstallRole, Started),
            tree(TreeAction::Install, TreeStatus::Started),
            tree(TreeAction::Install, TreeStatus::Succeeded),
            progress(InstallRole, Succeeded),
            progress(Bootloader, Started),
            progress(Bootloader, Succeeded),
            progress(Localboot, Started),
            Transition::LocalBoot {
                why: "localboot for 52:54:00:aa:00:01".into(),
            },
            progress(Localboot, Succeeded),
            progress(Finish, Started),
            progress(Finish, Succeeded),
        ];
        // Agents retry a POST whose answer was lost: every report may arrive twice.
        script.push(progress(Finish, Succeeded));
        for t in script {
            step(&mut node, t, AT)?;
        }
        let states: Vec<NodeState> = node.history.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [Discovered, Matched, Configuring, Installing, Installed]
        );
        assert_eq!(node.boot, BootTarget::Local);
        assert_eq!(node.version.as_deref(), Some("2"));
        // Later, the deployed host upgrades its tree.
        step(
            &mut node,
            tree(TreeAction::Upgrade, TreeStatus::Started),
            AT,
        )?;
        Ok(())
    }

    /// A failing run: the failed step, the log, then the failure report that gives the quota
    /// back, all accepted.
    #[test]
    fn a_failing_agent_run_is_legal() -> Res {
        let mut node = node_in(Matched);
        step(
            &mut node,
            progress(Step::Configure, StepStatus::Started),
            AT,
        )?;
        let failed = ProgressEvent {
            step: Step::Configure,
            status: StepStatus::Failed,
            message: "kvm.configure:2:1: command failed".into(),
            time: EventTime::Unix(1_700_000_000),
            node: None,
            log: Some(format!("{}END", "x".repeat(5000))),
        };
        step(&mut node, Transition::Progress(failed), AT)?;
        assert_eq!(node.state, Failed);
        let last = node
            .events
            .back()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let tail = last
            .strip_prefix("kvm.configure:2:1: command failed\n--- log (tail) ---\n")
            .ok_or("no log tail")?;
        assert_eq!(tail.len(), 4000);
        assert!(tail.ends_with("END"));
        step(&mut node, sample("log").ok_or("no sample")?, AT)?;
        step(&mut node, sample("failure report").ok_or("no sample")?, AT)?;
        assert_eq!(node.state, Failed);
        Ok(())
    }

    #[test]
    fn localboot_ends_an_install_under_way_and_only_that() -> Result<(), Illegal> {
        let why = || Transition::LocalBoot {
            why: "localboot from 10.0.0.1".into(),
        };
        let mut node = node_in(Installing);
        node.boot = BootTarget::Install;
        step(&mut node, why(), AT)?;
        let kinds: Vec<(&str, Option<&str>)> = node
            .events
            .iter()
            .map(|e| (e.kind.as_str(), e.step.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("boot", None),
                ("progress", Some("localboot")),
                ("boot", None)
            ]
        );
        assert_eq!((node.state, &node.boot), (Installed, &BootTarget::Local));
        let mut failed = node_in(Failed);
        failed.boot = BootTarget::Install;
        step(&mut failed, why(), AT)?;
        assert_eq!((failed.state, &failed.boot), (Failed, &BootTarget::Local));
        assert_eq!(failed.events.len(), 1);
        Ok(())
    }

    /// A repeated `finish/succeeded` after an operator asked for a reinstall does not take
    /// the reinstall back.
    #[test]
    fn a_repeated_success_report_leaves_the_next_boot_alone() -> Result<(), Illegal> {
        let mut node = node_in(Installed);
        node.boot = BootTarget::Install;
        step(&mut node, progress(Step::Finish, StepStatus::Succeeded), AT)?;
        assert_eq!((node.state, &node.boot), (Installed, &BootTarget::Install));
        Ok(())
    }

    #[test]
    fn progress_reports_fall_in_the_right_row() {
        use Step::*;
        use StepStatus::*;
        for step in [
            Detect,
            Upload,
            Configure,
            InstallRole,
            Bootloader,
            Localboot,
            Finish,
        ] {
            for status in [Started, Succeeded, Failed] {
                let want = match (step, status) {
                    (_, Failed) => Kind::ToFailed,
                    (Configure, Started) => Kind::ToConfiguring,
                    (InstallRole | Bootloader, Started) => Kind::ToInstalling,
                    (Finish, Succeeded) => Kind::ToInstalled,
                    _ => Kind::Progress,
                };
                assert_eq!(progress(step, status).kind(), want, "{step:?}/{status:?}");
            }
        }
    }

    /// The table as `docs/http-api.md` shows it.
    fn markdown() -> String {
        let mut out = String::from("| transition |");
        for s in ALL_STATES {
            out.push_str(&format!(" {} |", state_name(s)));
        }
        out.push_str("\n|---|---|---|---|---|---|---|\n");
        for k in KINDS {
            out.push_str(&format!("| {} |", kind_name(k)));
            for cell in row(k) {
                let text = match cell {
                    Stay => "stays".to_owned(),
                    To(s) => format!("→ {}", state_name(s)),
                    Reinstall => format!(
                        "→ discovered if next boot is `install`, else refused: `{}`",
                        Why::AskReinstall.code()
                    ),
                    No(why) => format!("refused: `{}`", why.code()),
                };
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_docs_show_this_table() {
        let docs = include_str!("../../../docs/http-api.md");
        let table = markdown();
        assert!(
            docs.contains(&table),
            "docs/http-api.md must hold the life-cycle table as the code has it:\n\n{table}"
        );
    }
}
