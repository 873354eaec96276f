//! Thresholds in the Nagios range syntax of the Monitoring Plugins development guidelines.
//!
//! `[@]start:end`: `start` and `:` may be left out when start is 0, an empty end is +∞, `~` as
//! start is -∞. A value outside the range (endpoints inclusive) raises the alert; with a leading
//! `@` a value inside the range does.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::status::Status;

/// One Nagios range: an alert is raised when a value falls outside it (or inside with `@`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    inside: bool,
}

impl Range {
    /// Parses a range such as `10`, `10:`, `~:10`, `10:20` or `@10:20`.
    pub fn parse(text: &str) -> Result<Range> {
        let bad = |reason: &str| Error::InvalidRange {
            range: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let (inside, body) = match trimmed.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if body.is_empty() {
            return Err(bad("empty range"));
        }
        let number = |s: &str| -> Result<f64> {
            let v: f64 = s
                .parse()
                .map_err(|_| bad(&format!("`{s}` is not a number")))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(bad(&format!("`{s}` is not a finite number")))
            }
        };
        let (start, end) = match body.split_once(':') {
            None => (0.0, number(body)?),
            Some((start, end)) => {
                let start = match start {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => number(s)?,
                };
                let end = if end.is_empty() {
                    f64::INFINITY
                } else {
                    number(end)?
                };
                (start, end)
            }
        };
        if start > end {
            return Err(bad("start is greater than end"));
        }
        Ok(Range { start, end, inside })
    }

    /// True when `value` raises the alert of this range.
    pub fn alerts(&self, value: f64) -> bool {
        if value.is_nan() {
            return true;
        }
        let within = value >= self.start && value <= self.end;
        within == self.inside
    }
}

impl FromStr for Range {
    type Err = Error;
    fn from_str(s: &str) -> Result<Range> {
        Range::parse(s)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        if self.start == f64::NEG_INFINITY {
            f.write_str("~:")?;
        } else if self.start != 0.0 || self.end == f64::INFINITY {
            write!(f, "{}:", self.start)?;
        }
        if self.end != f64::INFINITY {
            write!(f, "{}", self.end)?;
        }
        Ok(())
    }
}

/// Warning and critical ranges for one metric; either may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    /// Raises a warning when it alerts.
    pub warn: Option<Range>,
    /// Raises a critical state when it alerts (checked first).
    pub crit: Option<Range>,
}

impl Thresholds {
    /// Thresholds from optional range texts (`None` for no threshold).
    pub fn parse(warn: Option<&str>, crit: Option<&str>) -> Result<Thresholds> {
        Ok(Thresholds {
            warn: warn.map(Range::parse).transpose()?,
            crit: crit.map(Range::parse).transpose()?,
        })
    }

    /// The status of `value`: critical if the critical range alerts, else warning if the warning
    /// range alerts, else OK (as the guidelines' `get_status`).
    pub fn status(&self, value: f64) -> Status {
        if self.crit.is_some_and(|r| r.alerts(value)) {
            Status::Critical
        } else if self.warn.is_some_and(|r| r.alerts(value)) {
            Status::Warning
        } else {
            Status::Ok
        }
    }

    /// True when neither range is set.
    pub fn is_empty(&self) -> bool {
        self.warn.is_none() && self.crit.is_none()
    }
}
