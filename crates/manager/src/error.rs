//! Errors that say who must act: a stable code, a message for the user, and a kind the edge maps
//! to a status.

/// What kind of failure, so the edge can pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    BadRequest,
    Conflict,
    /// The file system refused (permissions).
    Forbidden,
    /// More bytes than the configured limit.
    TooLarge,
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

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ManagerError {
        ManagerError::new(ErrorKind::BadRequest, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ManagerError {
        ManagerError::new(ErrorKind::Conflict, code, message)
    }

    /// A contents path that does not exist (or is not served).
    pub fn contents_not_found(message: impl Into<String>) -> ManagerError {
        ManagerError::new(ErrorKind::NotFound, "contents_not_found", message)
    }

    /// A contents path that leaves the root, by `..` or through a symlink.
    pub fn path_outside_root(path: &str) -> ManagerError {
        ManagerError::new(
            ErrorKind::NotFound,
            "path_outside_root",
            format!("{path} is outside root contents directory"),
        )
    }

    pub fn permission_denied(path: &str) -> ManagerError {
        ManagerError::new(
            ErrorKind::Forbidden,
            "permission_denied",
            format!("Permission denied: {path}"),
        )
    }

    /// A notebook that is not valid nbformat 4; nothing was written.
    pub fn invalid_notebook(path: &str, problem: &str) -> ManagerError {
        ManagerError {
            kind: ErrorKind::BadRequest,
            code: "invalid_notebook",
            message: format!("Notebook {path} is invalid and was not saved: {problem}"),
            short_message: Some("Invalid notebook".into()),
        }
    }

    /// A save or upload larger than the configured `upload_bytes_max`; nothing was written.
    pub fn upload_too_large(bytes: u64, limit: u64) -> ManagerError {
        ManagerError::new(
            ErrorKind::TooLarge,
            "upload_too_large",
            format!("The file is {bytes} bytes, more than the {limit} bytes this server accepts; nothing was written"),
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
