//! hactl's errors and the exit code each one maps to (DESIGN.md "CLI contract"):
//! 0 ok, 1 operation failed or refused, 2 usage error, 3 manager unreachable.
//!
//! The mapping from gRPC status codes lives here too, as a pure function.

use thiserror::Error;
use tonic::Code;

/// Exit code: the operation failed or was refused.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command line or bad input (priority out of range, bad address).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the manager could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Everything that makes hactl exit non-zero.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CtlError {
    /// Bad input found before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// The manager answered, and the answer is "no" (or the operation failed).
    #[error("{0}")]
    Failed(String),
    /// stdout was closed by its reader (`hactl history | head`): hactl stops quietly and
    /// exits 0, as a Unix filter does.
    #[error("output closed")]
    OutputClosed,
    /// The manager could not be reached at `url`.
    #[error("manager unreachable at {url}: {detail}")]
    Unreachable {
        /// The manager URL hactl used.
        url: String,
        /// What went wrong (connect error, TLS, stream reset...).
        detail: String,
    },
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => EXIT_USAGE,
            CtlError::Failed(_) => EXIT_FAILED,
            CtlError::OutputClosed => 0,
            CtlError::Unreachable { .. } => EXIT_UNREACHABLE,
        }
    }

    /// Classify a gRPC status returned by the manager at `url`.
    pub fn from_status(status: &tonic::Status, url: &str) -> CtlError {
        // Transport errors come back as a short message with the cause in the source chain.
        let mut msg = join_causes(status.message(), status);
        if msg.is_empty() {
            msg = format!("{:?}", status.code()).to_lowercase();
        }
        match exit_code_for(status.code()) {
            EXIT_UNREACHABLE => CtlError::Unreachable {
                url: url.to_string(),
                detail: msg,
            },
            EXIT_USAGE => CtlError::Usage(msg),
            _ => CtlError::Failed(refusal_message(status.code(), &msg)),
        }
    }

    /// Classify a connect-time transport error for `url`.
    pub fn connect(err: &tonic::transport::Error, url: &str) -> CtlError {
        let detail = join_causes(&err.to_string(), err);
        CtlError::Unreachable {
            url: url.to_string(),
            detail,
        }
    }
}

/// The exit code for a gRPC status code returned by the manager.
pub fn exit_code_for(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::Unavailable => EXIT_UNREACHABLE,
        Code::InvalidArgument | Code::OutOfRange => EXIT_USAGE,
        Code::NotFound
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Aborted
        | Code::AlreadyExists
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unknown => EXIT_FAILED,
    }
}

/// Prefix a refusal with what kind it is when the manager's message does not say.
fn refusal_message(code: Code, msg: &str) -> String {
    let prefix = match code {
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "not authenticated",
        Code::DeadlineExceeded => "timed out",
        Code::Unimplemented => "not supported by this manager",
        _ => return msg.to_string(),
    };
    if msg.to_lowercase().contains(prefix) {
        msg.to_string()
    } else {
        format!("{prefix}: {msg}")
    }
}

/// `head` followed by the `source()` chain of `err`, joined with ": ", skipping parts
/// already said by an earlier one (transport errors repeat themselves).
fn join_causes(head: &str, err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !head.is_empty() {
        parts.push(head.to_string());
    }
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_contract() {
        assert_eq!(exit_code_for(Code::Ok), 0);
        assert_eq!(exit_code_for(Code::Unavailable), 3);
        assert_eq!(exit_code_for(Code::NotFound), 1);
        assert_eq!(exit_code_for(Code::FailedPrecondition), 1);
        assert_eq!(exit_code_for(Code::PermissionDenied), 1);
        assert_eq!(exit_code_for(Code::Aborted), 1);
        assert_eq!(exit_code_for(Code::InvalidArgument), 2);
        assert_eq!(exit_code_for(Code::OutOfRange), 2);
        assert_eq!(exit_code_for(Code::Internal), 1);
    }

    #[test]
    fn status_becomes_error_with_url_and_message() {
        let url = "http://192.0.2.50:7400";
        let e = CtlError::from_status(&tonic::Status::unavailable("connection refused"), url);
        assert_eq!(e.exit_code(), 3);
        let text = e.to_string();
        assert!(text.contains(url), "{text}");
        assert!(text.contains("connection refused"), "{text}");

        let e = CtlError::from_status(
            &tonic::Status::not_found("unknown node lb9; nodes: lb1, lb2"),
            url,
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "unknown node lb9; nodes: lb1, lb2");

        let e = CtlError::from_status(&tonic::Status::permission_denied("role viewer"), url);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "permission denied: role viewer");

        let e = CtlError::from_status(&tonic::Status::invalid_argument("bad vip"), url);
        assert_eq!(e, CtlError::Usage("bad vip".into()));
    }

    #[test]
    fn empty_message_names_the_code() {
        let e = CtlError::from_status(&tonic::Status::new(Code::Aborted, ""), "x");
        assert_eq!(e.to_string(), "aborted");
    }
}
