//! The [`Check`] trait and what a run of a check observes.

use serde::Serialize;

use crate::status::{Reason, Status};

/// One health check: a disk, a port, a web page, a certificate, a database...
///
/// A check reports what it saw as an [`Observation`]; it never returns an error, since a dead
/// target is a verdict, not a failure of the check. The [`crate::Monitor`] runs every check
/// under its own timeout, so an implementation need not bound its own waiting (but should not
/// block the async runtime: blocking calls belong on a worker thread).
#[async_trait::async_trait]
pub trait Check: Send + Sync {
    /// What kind of check this is (`tcp`, `http`, `tls`...), for reports.
    fn kind(&self) -> &'static str;

    /// Runs the check once.
    async fn run(&self) -> Observation;

    /// The metric that thresholds apply to when the configuration names none.
    fn primary_metric(&self) -> Option<&'static str> {
        None
    }
}

/// The unit of a metric, for perfdata and reports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// Percent (0 to 100).
    Percent,
    /// A count of things (connections, processes, inodes).
    Count,
    /// Days (certificate lifetime).
    Days,
    /// A plain number (load per core, a version flag).
    Number,
}

impl Unit {
    /// The unit of measure in Nagios perfdata (`s`, `B`, `%`, `c` for counters, empty otherwise).
    pub fn nagios_uom(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "B",
            Unit::Percent => "%",
            Unit::Count | Unit::Days | Unit::Number => "",
        }
    }
}

/// A measured value.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// A snake_case name, unique within the check (`free_percent`, `days_left`).
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

impl Metric {
    /// A metric.
    pub fn new(name: &'static str, value: f64, unit: Unit) -> Metric {
        Metric { name, value, unit }
    }
}

/// What one run of a check saw.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// The check's own verdict before thresholds (a refused port is critical by itself).
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// One line for a person (`connected in 0.4 ms`, `certificate expired 3 days ago`).
    pub message: String,
    /// Values thresholds and reports use.
    pub metrics: Vec<Metric>,
}

impl Observation {
    /// An OK observation.
    pub fn ok(message: impl Into<String>) -> Observation {
        Observation {
            status: Status::Ok,
            reason: Reason::Ok,
            message: message.into(),
            metrics: Vec::new(),
        }
    }

    /// A critical observation for `reason`.
    pub fn critical(reason: Reason, message: impl Into<String>) -> Observation {
        Observation {
            status: Status::Critical,
            reason,
            message: message.into(),
            metrics: Vec::new(),
        }
    }

    /// An unknown observation (the check could not decide).
    pub fn unknown(reason: Reason, message: impl Into<String>) -> Observation {
        Observation {
            status: Status::Unknown,
            reason,
            message: message.into(),
            metrics: Vec::new(),
        }
    }

    /// Adds a metric.
    pub fn with_metric(mut self, name: &'static str, value: f64, unit: Unit) -> Observation {
        self.metrics.push(Metric::new(name, value, unit));
        self
    }

    /// The value of metric `name`, if measured.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}
