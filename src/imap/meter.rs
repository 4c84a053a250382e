//! IMAP command and connection accounting for metrics: every command's verb, outcome and time,
//! labelled only from fixed sets (a verb is a `&'static str` chosen by code, never an argument).

use std::time::Instant;

use super::connection::Completion;
use super::encode::Command;
use super::error::ImapError;
use crate::telemetry::names;

/// Records one exchange of commands when finished, or as `cancelled` when dropped before (a
/// request whose client went away, or an outer time limit).
pub(crate) struct CommandMeter<'a> {
    cmds: &'a [Command],
    started: Instant,
    timed: bool,
    finished: bool,
}

impl<'a> CommandMeter<'a> {
    /// Starts timing `cmds`.
    pub(crate) fn start(cmds: &'a [Command]) -> Self {
        Self::new(cmds, true)
    }

    /// Like [`CommandMeter::start`] for a command whose length is not its cost (IDLE waits for
    /// the server by design): counted, not timed.
    pub(crate) fn start_untimed(cmds: &'a [Command]) -> Self {
        Self::new(cmds, false)
    }

    fn new(cmds: &'a [Command], timed: bool) -> Self {
        CommandMeter {
            cmds,
            started: Instant::now(),
            timed,
            finished: false,
        }
    }

    /// Records the exchange's result: each completion's status, or the error for every command.
    pub(crate) fn finish(mut self, result: &Result<Vec<Completion>, ImapError>) {
        self.finished = true;
        match result {
            Ok(done) => {
                for (cmd, completion) in self.cmds.iter().zip(done) {
                    let outcome = match completion.status {
                        async_imap::imap_proto::Status::Ok => "ok",
                        async_imap::imap_proto::Status::No => "no",
                        _ => "bad",
                    };
                    self.record(cmd, outcome);
                }
            }
            Err(e) => {
                for cmd in self.cmds {
                    self.record(cmd, command_outcome(cmd.name(), e));
                }
            }
        }
    }

    /// Records a command that completed with `status`.
    pub(crate) fn finish_status(mut self, status: &async_imap::imap_proto::Status) {
        self.finished = true;
        let outcome = match status {
            async_imap::imap_proto::Status::Ok => "ok",
            async_imap::imap_proto::Status::No => "no",
            _ => "bad",
        };
        for cmd in self.cmds {
            self.record(cmd, outcome);
        }
    }

    /// Records a command that stands alone (IDLE) by its result.
    pub(crate) fn finish_one<T>(mut self, result: &Result<T, ImapError>) {
        self.finished = true;
        for cmd in self.cmds {
            let outcome = match result {
                Ok(_) => "ok",
                Err(e) => command_outcome(cmd.name(), e),
            };
            self.record(cmd, outcome);
        }
    }

    fn record(&self, cmd: &Command, outcome: &'static str) {
        let command = cmd.name();
        metrics::counter!(names::IMAP_COMMANDS, "command" => command, "outcome" => outcome)
            .increment(1);
        if outcome != "ok" {
            metrics::counter!(names::IMAP_ERRORS, "kind" => outcome).increment(1);
        }
        if self.timed {
            metrics::histogram!(names::IMAP_COMMAND_DURATION, "command" => command)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for CommandMeter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for cmd in self.cmds {
                self.record(cmd, "cancelled");
            }
        }
    }
}

/// The outcome label of `command` that failed with `e`.
fn command_outcome(command: &str, e: &ImapError) -> &'static str {
    match e {
        // The server answers LOGOUT with BYE (RFC 3501 §6.1.3): that is its success.
        ImapError::Unavailable(_) if command == "LOGOUT" => "ok",
        ImapError::Timeout => "timeout",
        ImapError::Io(_) => "io",
        // BYE, or the connection closed under the command.
        ImapError::Unavailable(_) => "bye",
        ImapError::Bad(_) => "bad",
        ImapError::Protocol(_) => "protocol",
        ImapError::No { .. }
        | ImapError::MailboxNotFound
        | ImapError::AlreadyExists
        | ImapError::NotAllowed(_)
        | ImapError::AuthenticationFailed
        | ImapError::TokenRefused(_)
        | ImapError::OverQuota(_) => "no",
        _ => "other",
    }
}

/// Counts a connection attempt that failed before its session was logged in.
pub(crate) fn connect_failed(e: &ImapError) {
    let kind = match e {
        ImapError::AuthenticationFailed => "auth",
        ImapError::Unavailable(_) => "unavailable",
        ImapError::Tls(_) | ImapError::StartTls(_) => "tls",
        ImapError::Timeout => "timeout",
        ImapError::Io(_) => "io",
        ImapError::Protocol(_) | ImapError::Bad(_) => "protocol",
        _ => "other",
    };
    metrics::counter!(names::IMAP_CONNECT_FAILURES, "kind" => kind).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_come_from_a_fixed_set_whatever_the_server_said() {
        let errors = [
            ImapError::Timeout,
            ImapError::Io(std::io::Error::other("reset by alice@example.com")),
            ImapError::Unavailable("server ended the session: Secret-Folder".into()),
            ImapError::Bad("bad INBOX/Alice".into()),
            ImapError::Protocol("unexpected tag".into()),
            ImapError::No {
                code: Some("OVERQUOTA".into()),
                text: "alice is over quota".into(),
            },
            ImapError::MailboxNotFound,
            ImapError::PoolExhausted,
        ];
        let outcomes: Vec<&str> = errors
            .iter()
            .map(|e| command_outcome("SELECT", e))
            .collect();
        assert_eq!(
            outcomes,
            [
                "timeout", "io", "bye", "bad", "protocol", "no", "no", "other"
            ]
        );
        assert_eq!(
            command_outcome("LOGOUT", &ImapError::Unavailable("BYE".into())),
            "ok",
            "LOGOUT ends with BYE"
        );
    }
}
