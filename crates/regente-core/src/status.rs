//! Execution statuses, spelled as the Integration API spells them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    /// Queued, not started yet ("pendent" is the API's word).
    Pendent,
    Running,
    Finished,
    Error,
    Canceled,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Pendent,
        ExecutionStatus::Running,
        ExecutionStatus::Finished,
        ExecutionStatus::Error,
        ExecutionStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pendent => "PENDENT",
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Finished => "FINISHED",
            ExecutionStatus::Error => "ERROR",
            ExecutionStatus::Canceled => "CANCELED",
        }
    }

    /// Parses the API spelling; case-insensitive so that `?status=running` works.
    pub fn parse(text: &str) -> Option<ExecutionStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }

    /// An ended execution never changes again.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Finished | ExecutionStatus::Error | ExecutionStatus::Canceled
        )
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back_from_its_spelling() {
        for status in ExecutionStatus::ALL {
            assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(
            ExecutionStatus::parse("running"),
            Some(ExecutionStatus::Running)
        );
        assert_eq!(ExecutionStatus::parse("DONE"), None);
    }

    #[test]
    fn only_finished_error_and_canceled_are_ended() {
        let ended: Vec<_> = ExecutionStatus::ALL
            .into_iter()
            .filter(|s| s.is_ended())
            .collect();
        assert_eq!(
            ended,
            [
                ExecutionStatus::Finished,
                ExecutionStatus::Error,
                ExecutionStatus::Canceled
            ]
        );
    }
}
