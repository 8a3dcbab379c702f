//! Errors that say who must act: a stable code, a message for the user, and a kind the edge maps
//! to a status.

/// What kind of failure, so the edge can pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    BadRequest,
    Conflict,
    Unavailable,
    /// The requested kernelspec is not installed.
    KernelUnavailable,
    Internal,
}

/// An application error with a stable machine-readable code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ManagerError {
    pub kind: ErrorKind,
    /// Stable identifier, e.g. `kernel_not_found`.
    pub code: &'static str,
    /// What happened and what to do, for the user.
    pub message: String,
    /// A few words for a dialog title, where clients show one (jupyter_server's `short_message`).
    pub short_message: Option<String>,
}

impl ManagerError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> ManagerError {
        ManagerError {
            kind,
            code,
            message: message.into(),
            short_message: None,
        }
    }

    /// The named kernelspec does not exist (jupyter_server answers 501 for sessions).
    pub fn kernelspec_not_found(name: &str) -> ManagerError {
        ManagerError {
            kind: ErrorKind::KernelUnavailable,
            code: "kernelspec_not_found",
            message: format!("The '{name}' kernel is not available. Please pick another suitable kernel instead, or install that kernel."),
            short_message: Some(format!("{name} not found")),
        }
    }

    pub fn kernel_not_found(id: &str) -> ManagerError {
        ManagerError::new(
            ErrorKind::NotFound,
            "kernel_not_found",
            format!("Kernel does not exist: {id}"),
        )
    }

    pub fn internal(code: &'static str, message: impl Into<String>) -> ManagerError {
        ManagerError::new(ErrorKind::Internal, code, message)
    }
}

impl From<commonlab_store::StoreError> for ManagerError {
    fn from(e: commonlab_store::StoreError) -> ManagerError {
        ManagerError::internal("store_failed", format!("The server's database failed: {e}"))
    }
}
