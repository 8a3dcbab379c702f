//! Sessions: a document path bound to a kernel, as `/api/sessions` exposes them.

use std::sync::Arc;

use commonlab_store::{SessionRecord, Store};
use serde::{Deserialize, Serialize};

use crate::{ErrorKind, KernelManager, KernelModel, ManagerError};

/// The REST model of a session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionModel {
    pub id: String,
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub kernel: KernelModel,
    pub notebook: NotebookRef,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotebookRef {
    pub path: String,
    pub name: String,
}

/// Which kernel a session request names: an existing one by id, or a new one by spec name.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KernelRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// A create or update request body; every field optional so PATCH can use it too.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SessionRequest {
    pub path: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub kernel: Option<KernelRef>,
}

/// Creates, updates and removes sessions; kernels come from the [`KernelManager`].
pub struct SessionManager {
    kernels: Arc<KernelManager>,
    store: Arc<Store>,
}

impl SessionManager {
    pub fn new(kernels: Arc<KernelManager>, store: Arc<Store>) -> SessionManager {
        SessionManager { kernels, store }
    }

    fn model(&self, record: &SessionRecord) -> Option<SessionModel> {
        let kernel = self.kernels.get(&record.kernel_id).ok()?.model();
        Some(SessionModel {
            id: record.id.clone(),
            path: record.path.clone(),
            name: record.name.clone(),
            kind: record.kind.clone(),
            kernel,
            notebook: NotebookRef {
                path: record.path.clone(),
                name: record.name.clone(),
            },
        })
    }

    /// Every session whose kernel still exists; sessions of vanished kernels are pruned.
    pub fn list(&self) -> Result<Vec<SessionModel>, ManagerError> {
        let mut models = Vec::new();
        for record in self.store.sessions()? {
            match self.model(&record) {
                Some(model) => models.push(model),
                None => self.store.delete_session(&record.id)?,
            }
        }
        Ok(models)
    }

    pub fn get(&self, id: &str) -> Result<SessionModel, ManagerError> {
        let not_found = || {
            ManagerError::new(
                ErrorKind::NotFound,
                "session_not_found",
                format!("Session not found: session_id='{id}'"),
            )
        };
        let record = self.store.session(id)?.ok_or_else(not_found)?;
        match self.model(&record) {
            Some(model) => Ok(model),
            None => {
                self.store.delete_session(id)?;
                Err(not_found())
            }
        }
    }

    async fn kernel_for(&self, kernel: Option<&KernelRef>) -> Result<String, ManagerError> {
        match kernel {
            Some(KernelRef { id: Some(id), .. }) => Ok(self.kernels.get(id)?.id.clone()),
            Some(KernelRef { name, .. }) => {
                Ok(self.kernels.start(name.as_deref()).await?.id.clone())
            }
            None => Ok(self.kernels.start(None).await?.id.clone()),
        }
    }

    /// Creates a session, or returns the existing one for the same path (as jupyter_server does).
    pub async fn create(&self, request: SessionRequest) -> Result<SessionModel, ManagerError> {
        let path = request.path.filter(|p| !p.is_empty()).ok_or_else(|| {
            ManagerError::new(
                ErrorKind::BadRequest,
                "session_path_missing",
                "Missing field in JSON data: path",
            )
        })?;
        for model in self.list()? {
            if model.path == path {
                return Ok(model);
            }
        }
        let kernel_id = self.kernel_for(request.kernel.as_ref()).await?;
        let record = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: request.name.unwrap_or_default(),
            kind: request.kind.unwrap_or_else(|| "notebook".into()),
            path,
            kernel_id,
        };
        self.store.upsert_session(&record)?;
        self.get(&record.id)
    }

    /// Renames, retypes, or moves a session to another kernel.
    pub async fn update(
        &self,
        id: &str,
        request: SessionRequest,
    ) -> Result<SessionModel, ManagerError> {
        let mut record = self.store.session(id)?.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::NotFound,
                "session_not_found",
                format!("Session not found: session_id='{id}'"),
            )
        })?;
        if let Some(path) = request.path {
            record.path = path;
        }
        if let Some(name) = request.name {
            record.name = name;
        }
        if let Some(kind) = request.kind {
            record.kind = kind;
        }
        let old_kernel = record.kernel_id.clone();
        if let Some(kernel) = request.kernel.as_ref() {
            record.kernel_id = self.kernel_for(Some(kernel)).await?;
        }
        self.store.upsert_session(&record)?;
        if record.kernel_id != old_kernel {
            let still_used = self
                .store
                .sessions()?
                .iter()
                .any(|s| s.kernel_id == old_kernel);
            if !still_used {
                let _ = self.kernels.shutdown(&old_kernel).await;
            }
        }
        self.get(id)
    }

    /// Deletes a session and shuts down its kernel.
    pub async fn delete(&self, id: &str) -> Result<(), ManagerError> {
        let record = self.store.session(id)?.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::NotFound,
                "session_not_found",
                format!("Session not found: session_id='{id}'"),
            )
        })?;
        self.store.delete_session(id)?;
        match self.kernels.shutdown(&record.kernel_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
