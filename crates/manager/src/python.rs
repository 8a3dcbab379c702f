//! Finding a Python that has ipykernel, or setting up a managed environment with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use commonlab_runtime::{KernelSpec, KernelSpecFile};

use crate::{ErrorKind, ManagerError};

/// A Python interpreter known to import ipykernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    pub python: PathBuf,
    /// `sys.prefix`, whose `share/jupyter` holds the environment's kernelspecs and JupyterLab.
    pub prefix: PathBuf,
}

impl PythonEnv {
    /// The `python3` kernelspec this interpreter provides, as jupyter_client's native spec.
    pub fn kernelspec(&self) -> KernelSpec {
        let resource_dir = self.prefix.join("share/jupyter/kernels/python3");
        KernelSpec {
            name: "python3".into(),
            resource_dir,
            spec: KernelSpecFile {
                argv: vec![
                    self.python.display().to_string(),
                    "-m".into(),
                    "ipykernel_launcher".into(),
                    "-f".into(),
                    "{connection_file}".into(),
                ],
                display_name: "Python 3 (ipykernel)".into(),
                language: "python".into(),
                interrupt_mode: Default::default(),
                env: Default::default(),
                metadata: Default::default(),
            },
        }
    }
}

/// Returns the first candidate that imports ipykernel, with its prefix.
pub fn find_python(candidates: &[PathBuf]) -> Option<PythonEnv> {
    candidates.iter().find_map(|python| probe(python))
}

fn probe(python: &Path) -> Option<PythonEnv> {
    let output = std::process::Command::new(python)
        .args(["-c", "import sys, ipykernel; print(sys.prefix)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let prefix = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    Some(PythonEnv {
        python: python.to_owned(),
        prefix: PathBuf::from(prefix),
    })
}

/// Sets up a managed environment under the data directory when no Python with ipykernel exists.
pub struct PythonSetup {
    pub env_dir: PathBuf,
    /// Interpreters tried, in order, to create the environment.
    pub base_pythons: Vec<PathBuf>,
    pub packages: Vec<String>,
}

impl PythonSetup {
    /// The managed environment's interpreter, if it is already usable.
    pub fn existing(&self) -> Option<PythonEnv> {
        probe(&self.env_dir.join("bin/python"))
    }

    /// Creates the environment and installs the packages, logging progress. Blocking.
    pub fn create(&self) -> Result<PythonEnv, ManagerError> {
        let fail = |what: String| {
            ManagerError::new(
                ErrorKind::Unavailable,
                "python_setup_failed",
                format!(
                    "{what}. Install Python 3 with the venv module (Debian: apt-get install python3-venv) \
                     and try again, or point `kernel.python` in the config at a Python that has ipykernel installed."
                ),
            )
        };
        let base = self
            .base_pythons
            .iter()
            .find(|p| {
                std::process::Command::new(p)
                    .args(["-c", "import venv, ensurepip"])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                fail("No Python 3 with the venv and ensurepip modules was found".into())
            })?;
        tracing::info!(env = %self.env_dir.display(), python = %base.display(), "no Python with ipykernel found: creating a managed environment");
        let status = std::process::Command::new(base)
            .args(["-m", "venv"])
            .arg(&self.env_dir)
            .status()
            .map_err(|e| fail(format!("Could not run {}: {e}", base.display())))?;
        if !status.success() {
            return Err(fail(format!(
                "Creating the environment at {} failed",
                self.env_dir.display()
            )));
        }
        let python = self.env_dir.join("bin/python");
        tracing::info!(packages = ?self.packages, "installing packages into the managed environment (this takes a minute)");
        let status = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
            ])
            .args(&self.packages)
            .status()
            .map_err(|e| fail(format!("Could not run pip: {e}")))?;
        if !status.success() {
            return Err(fail(format!(
                "Installing {} failed (see pip's output above)",
                self.packages.join(", ")
            )));
        }
        probe(&python).ok_or_else(|| {
            fail("The managed environment was created but cannot import ipykernel".into())
        })
    }
}
