//! Progress events in order: each step is `started` then `succeeded` or `failed`; events
//! from before the server named the node (detect, upload) wait and go out once it has.

use rdeploy_configure::wire::{EventTime, ProgressEvent, Step, StepStatus};

/// Where events go (the server; a list in tests).
pub trait EventSink {
    /// Delivers one event of node `node`; the error says why it could not.
    fn send(&mut self, node: &str, event: &ProgressEvent) -> Result<(), String>;
}

/// Keeps the run's events in order and knows which step is under way.
pub struct Reporter {
    node: Option<String>,
    pending: Vec<ProgressEvent>,
    open: Option<Step>,
    now: Box<dyn Fn() -> i64>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("node", &self.node)
            .field("pending", &self.pending.len())
            .field("open", &self.open)
            .finish()
    }
}

/// Unix seconds by the system clock (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Reporter {
    /// A reporter stamping events with `now` (Unix seconds).
    pub fn new(now: Box<dyn Fn() -> i64>) -> Self {
        Self {
            node: None,
            pending: Vec::new(),
            open: None,
            now,
        }
    }

    /// The node id, once the server gave it.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The step under way, if any.
    pub fn open_step(&self) -> Option<Step> {
        self.open
    }

    /// The server named the node: the events held so far go out, in order.
    pub fn set_node(&mut self, sink: &mut dyn EventSink, node: &str) -> Result<(), String> {
        self.node = Some(node.to_owned());
        for ev in std::mem::take(&mut self.pending) {
            sink.send(node, &ev)?;
        }
        Ok(())
    }

    /// `step` began (a step still open is an error of the caller).
    pub fn start(
        &mut self,
        sink: &mut dyn EventSink,
        step: Step,
        message: &str,
    ) -> Result<(), String> {
        if let Some(open) = self.open {
            return Err(format!(
                "step {open:?} is still under way, cannot start {step:?}"
            ));
        }
        self.open = Some(step);
        self.emit(sink, step, StepStatus::Started, message, None)
    }

    /// The open step `step` finished well.
    pub fn succeed(
        &mut self,
        sink: &mut dyn EventSink,
        step: Step,
        message: &str,
    ) -> Result<(), String> {
        if self.open != Some(step) {
            return Err(format!("step {step:?} is not under way"));
        }
        self.open = None;
        self.emit(sink, step, StepStatus::Succeeded, message, None)
    }

    /// The open step (or, between steps, `finish`) failed; the event carries `log`. Returns the
    /// step reported as failed.
    pub fn fail(
        &mut self,
        sink: &mut dyn EventSink,
        message: &str,
        log: Option<String>,
    ) -> (Step, Result<(), String>) {
        let step = self.open.take().unwrap_or(Step::Finish);
        (
            step,
            self.emit(sink, step, StepStatus::Failed, message, log),
        )
    }

    fn emit(
        &mut self,
        sink: &mut dyn EventSink,
        step: Step,
        status: StepStatus,
        message: &str,
        log: Option<String>,
    ) -> Result<(), String> {
        let ev = ProgressEvent {
            step,
            status,
            message: message.to_owned(),
            time: EventTime::Unix((self.now)()),
            node: None,
            log,
        };
        match &self.node {
            Some(node) => sink.send(node, &ev),
            None => {
                self.pending.push(ev);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sink(Vec<(String, Step, StepStatus, i64)>);

    impl EventSink for Sink {
        fn send(&mut self, node: &str, e: &ProgressEvent) -> Result<(), String> {
            let EventTime::Unix(t) = e.time else {
                return Err("not unix time".into());
            };
            self.0.push((node.to_owned(), e.step, e.status, t));
            Ok(())
        }
    }

    fn reporter() -> Reporter {
        let clock = std::cell::Cell::new(100);
        Reporter::new(Box::new(move || {
            clock.set(clock.get() + 1);
            clock.get()
        }))
    }

    #[test]
    fn events_before_the_node_is_known_wait_and_keep_their_order() -> Result<(), String> {
        let mut r = reporter();
        let mut sink = Sink::default();
        r.start(&mut sink, Step::Detect, "")?;
        r.succeed(&mut sink, Step::Detect, "")?;
        r.start(&mut sink, Step::Upload, "")?;
        assert!(sink.0.is_empty());
        r.set_node(&mut sink, "n1")?;
        r.succeed(&mut sink, Step::Upload, "kvm")?;
        r.start(&mut sink, Step::Configure, "")?;
        use Step::*;
        use StepStatus::*;
        let got: Vec<(Step, StepStatus)> = sink.0.iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(
            got,
            [
                (Detect, Started),
                (Detect, Succeeded),
                (Upload, Started),
                (Upload, Succeeded),
                (Configure, Started)
            ]
        );
        assert!(sink.0.iter().all(|e| e.0 == "n1"));
        // Times are those of the moment each step happened, not of the flush.
        let times: Vec<i64> = sink.0.iter().map(|e| e.3).collect();
        assert_eq!(times, [101, 102, 103, 104, 105]);
        Ok(())
    }

    #[test]
    fn a_failure_fails_the_open_step() -> Result<(), String> {
        let mut r = reporter();
        let mut sink = Sink::default();
        r.set_node(&mut sink, "n1")?;
        r.start(&mut sink, Step::Configure, "")?;
        let (step, sent) = r.fail(&mut sink, "boom", Some("log".into()));
        sent?;
        assert_eq!(step, Step::Configure);
        assert_eq!(
            sink.0.last().map(|e| (e.1, e.2)),
            Some((Step::Configure, StepStatus::Failed))
        );
        assert_eq!(r.open_step(), None);
        // Between steps, the run as a whole failed.
        let (step, _) = r.fail(&mut sink, "boom", None);
        assert_eq!(step, Step::Finish);
        Ok(())
    }

    #[test]
    fn steps_cannot_overlap_or_end_unstarted() {
        let mut r = reporter();
        let mut sink = Sink::default();
        assert!(r.succeed(&mut sink, Step::Bootloader, "").is_err());
        assert!(r.start(&mut sink, Step::Bootloader, "").is_ok());
        assert!(r.start(&mut sink, Step::Localboot, "").is_err());
    }
}
