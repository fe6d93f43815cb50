//! What the callers of a distributed test saw: each task keeps a [`Tally`], and the
//! tallies of tasks (then of processes) are added up.

use std::fmt::Display;
use std::time::Duration;

/// Counts of one task, thread or process.
#[derive(Debug, Default)]
pub struct Tally {
    pub admitted: u64,
    /// Admissions a test counts apart (e.g. those of the run's last moments).
    pub late: u64,
    pub denied: u64,
    pub errors: u64,
    /// The longest retry-after of a refusal seen.
    pub max_retry: Duration,
    pub first_error: Option<String>,
}

impl Tally {
    /// Counts an error, keeping the text of the first.
    pub fn error(&mut self, error: impl Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    pub fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.late += other.late;
        self.denied += other.denied;
        self.errors += other.errors;
        self.max_retry = self.max_retry.max(other.max_retry);
        self.first_error = self.first_error.take().or(other.first_error);
    }
}
