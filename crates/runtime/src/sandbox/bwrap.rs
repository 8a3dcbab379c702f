//! The bubblewrap command line of one sandboxed kernel, built from a [`Plan`] so it can be read
//! and tested without starting anything.
//!
//! The filesystem is an allowlist: the system directories read-only, the Python environment the
//! kernelspec needs read-only, the workspace and the kernel's socket directory writable, a new
//! `/proc`, a minimal `/dev` and a private size-limited `/tmp` (and `/dev/shm`). Everything else of the host
//! (`/root`, `/home`, `/var`, the server's data directory, other workspaces) does not exist inside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// System directories bound read-only (or re-created as the same symlink) when present.
pub(crate) const SYSTEM_DIRS: [&str; 8] = [
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// One system directory as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SystemEntry {
    Dir(PathBuf),
    Symlink { target: PathBuf, path: PathBuf },
}

/// The system directories of this host.
pub(crate) fn system_entries() -> Vec<SystemEntry> {
    SYSTEM_DIRS
        .iter()
        .filter_map(|dir| {
            let path = PathBuf::from(dir);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemEntry::Symlink { target, path })
            } else if meta.is_dir() {
                Some(SystemEntry::Dir(path))
            } else {
                None
            }
        })
        .collect()
}

/// Whether `path` is inside one of the system directories (already bound read-only).
pub(crate) fn is_system_path(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|dir| path.starts_with(dir))
}

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) bwrap: PathBuf,
    pub(crate) system: Vec<SystemEntry>,
    pub(crate) tmp_bytes_max: u64,
    /// Bound read-only at the same path (Python environments, operator extras).
    pub(crate) read_only: Vec<PathBuf>,
    /// Bound writable at the same path (the workspace, the socket directory).
    pub(crate) writable: Vec<PathBuf>,
    /// Host device nodes bound at `/dev/<file name>` (the GPUs granted to the kernel).
    pub(crate) devices: Vec<PathBuf>,
    /// Egress: the network namespace is the one the launcher makes (slirp4netns routes it out),
    /// not one bubblewrap makes.
    pub(crate) egress: bool,
    /// With egress, the resolver file bound over `/etc/resolv.conf` (slirp4netns's DNS).
    pub(crate) resolv_conf: Option<PathBuf>,
    pub(crate) cwd: PathBuf,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) argv: Vec<String>,
}

impl Plan {
    /// The full command: bubblewrap's program, its options, then the kernel's argv.
    pub(crate) fn command(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![self.bwrap.display().to_string()];
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        // A user namespace (bubblewrap runs unprivileged), and new pid, ipc, uts, network and
        // cgroup namespaces: only loopback exists, and it is the sandbox's own.
        if self.egress {
            push(&[
                "--unshare-user",
                "--unshare-ipc",
                "--unshare-pid",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--disable-userns",
            ]);
        } else {
            push(&["--unshare-all", "--unshare-user", "--disable-userns"]);
        }
        push(&[
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "commonlab",
        ]);
        for entry in &self.system {
            match entry {
                SystemEntry::Dir(dir) => {
                    let dir = dir.display().to_string();
                    push(&["--ro-bind", &dir, &dir]);
                }
                SystemEntry::Symlink { target, path } => {
                    push(&[
                        "--symlink",
                        &target.display().to_string(),
                        &path.display().to_string(),
                    ]);
                }
            }
        }
        if let Some(resolv) = &self.resolv_conf {
            push(&[
                "--ro-bind",
                &resolv.display().to_string(),
                "/etc/resolv.conf",
            ]);
        }
        push(&["--proc", "/proc", "--dev", "/dev"]);
        // Before the binds: a workspace below /tmp must be mounted on top of the new /tmp.
        let tmp_size = self.tmp_bytes_max.to_string();
        push(&["--size", &tmp_size, "--perms", "1777", "--tmpfs", "/tmp"]);
        // /dev/shm would otherwise be part of /dev's unbounded tmpfs.
        push(&[
            "--size", &tmp_size, "--perms", "1777", "--tmpfs", "/dev/shm",
        ]);
        // Only the devices granted to this kernel, where drivers look for them.
        for device in &self.devices {
            let Some(name) = device.file_name() else {
                continue;
            };
            let inside = Path::new("/dev").join(name);
            push(&[
                "--dev-bind",
                &device.display().to_string(),
                &inside.display().to_string(),
            ]);
        }
        let mut binds: Vec<(&PathBuf, &str)> = self
            .read_only
            .iter()
            .map(|p| (p, "--ro-bind"))
            .chain(self.writable.iter().map(|p| (p, "--bind")))
            .collect();
        // Parents before children, so a deeper bind is not hidden by a later shallower one.
        binds.sort_by_key(|(path, _)| path.components().count());
        for (path, option) in binds {
            let path = path.display().to_string();
            push(&[option, &path, &path]);
        }
        // The root itself (a tmpfs bubblewrap made) is not a place to write either.
        push(&["--remount-ro", "/"]);
        push(&["--chdir", &self.cwd.display().to_string(), "--clearenv"]);
        for (key, value) in &self.env {
            push(&["--setenv", key, value]);
        }
        args.push("--".into());
        args.extend(self.argv.iter().cloned());
        args
    }
}

/// The directories a Python program needs beyond the system ones: the virtual environment that
/// holds it (the nearest parent with `pyvenv.cfg`), the prefix its `home` names, and the prefix
/// of the interpreter it resolves to. Paths inside the system directories are left out.
pub(crate) fn python_dirs(program: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let resolved = std::fs::canonicalize(program).ok();
    for candidate in std::iter::once(program.to_owned()).chain(resolved) {
        for ancestor in candidate.ancestors().skip(1) {
            let cfg = ancestor.join("pyvenv.cfg");
            if let Ok(text) = std::fs::read_to_string(&cfg) {
                dirs.push(ancestor.to_owned());
                let home = text.lines().find_map(|line| {
                    let (key, value) = line.split_once('=')?;
                    (key.trim() == "home").then(|| PathBuf::from(value.trim()))
                });
                if let Some(prefix) = home.as_deref().and_then(Path::parent) {
                    dirs.push(prefix.to_owned());
                }
                break;
            }
        }
        if let Some(prefix) = candidate
            .parent()
            .filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))
            .and_then(Path::parent)
        {
            dirs.push(prefix.to_owned());
        }
    }
    dirs.retain(|dir| dir.is_absolute() && dir != Path::new("/") && !is_system_path(dir));
    dirs.sort();
    dirs.dedup();
    // A directory inside another one already bound adds nothing.
    let all = dirs.clone();
    dirs.retain(|dir| {
        !all.iter()
            .any(|other| other != dir && dir.starts_with(other))
    });
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_binds_the_system_read_only_and_only_the_workspace_writable() {
        let plan = Plan {
            bwrap: "/usr/bin/bwrap".into(),
            system: vec![
                SystemEntry::Dir("/usr".into()),
                SystemEntry::Symlink {
                    target: "usr/bin".into(),
                    path: "/bin".into(),
                },
            ],
            tmp_bytes_max: 1024,
            read_only: vec!["/opt/env".into()],
            writable: vec!["/tmp/ws/alice".into(), "/run/k/k-1".into()],
            devices: vec!["/srv/fake-gpus/nvidia0".into()],
            egress: false,
            resolv_conf: None,
            cwd: "/tmp/ws/alice".into(),
            env: BTreeMap::from([("HOME".to_owned(), "/tmp/ws/alice".to_owned())]),
            argv: vec!["python".into(), "-m".into(), "ipykernel_launcher".into()],
        };
        assert_eq!(
            plan.command().join(" "),
            "/usr/bin/bwrap --unshare-all --unshare-user --disable-userns --die-with-parent \
             --new-session --hostname commonlab --ro-bind /usr /usr --symlink usr/bin /bin \
             --proc /proc --dev /dev --size 1024 --perms 1777 --tmpfs /tmp \
             --size 1024 --perms 1777 --tmpfs /dev/shm \
             --dev-bind /srv/fake-gpus/nvidia0 /dev/nvidia0 \
             --ro-bind /opt/env /opt/env --bind /tmp/ws/alice /tmp/ws/alice \
             --bind /run/k/k-1 /run/k/k-1 --remount-ro / --chdir /tmp/ws/alice --clearenv \
             --setenv HOME /tmp/ws/alice -- python -m ipykernel_launcher"
        );
    }

    #[test]
    fn python_dirs_finds_the_venv_and_skips_system_prefixes() {
        let root = tempfile::tempdir().expect("tempdir");
        let venv = root.path().join("env");
        std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
        std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\nversion = 3.11\n")
            .expect("write");
        std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python")).expect("link");
        assert_eq!(python_dirs(&venv.join("bin/python")), vec![venv]);
        assert!(python_dirs(Path::new("/usr/bin/python3")).is_empty());
    }
}
