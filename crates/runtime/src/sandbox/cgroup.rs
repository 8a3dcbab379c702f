//! The cgroups of sandboxed runtimes: limits on CPU, memory and process count, membership, and
//! what the memory controller recorded when a kernel died.
//!
//! cgroup v2 (one unified tree with `cgroup.controllers`) and v1 (one tree per controller, as on
//! hosts that never moved on) sit behind one [`CgroupDriver`] trait, picked once by [`detect`].
//! Kernel cgroups go under a `commonlab` parent inside the server's own cgroup, so whatever
//! accounting applies to the server also applies to its kernels, each inside its group
//! (`commonlab/<group>/<kernel>`, one group per uid): the group holds the totals of memory and
//! CPU all its kernels share, so N kernels of one user never get N times the user's limits.
//! A group goes with its last kernel; setting a group up and removing an empty one are
//! serialised, so a kernel never lands in a group removed under it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxLimits;

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The cgroup of one runtime, by absolute directories, so a restarted server finds it even when
/// it now runs in another cgroup itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelCgroup {
    pub version: CgroupVersion,
    /// Controller name to directory on v1 (`memory`, `cpu`, `pids`, maybe `cpuacct`); the single
    /// key `unified` on v2.
    pub dirs: BTreeMap<String, PathBuf>,
}

impl KernelCgroup {
    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            CgroupVersion::V1 => self.dirs.get(controller),
            CgroupVersion::V2 => self.dirs.get("unified"),
        }
        .map(PathBuf::as_path)
    }
}

/// What the memory controller recorded for a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MemoryUse {
    pub(crate) limit_bytes: Option<u64>,
    pub(crate) peak_bytes: Option<u64>,
    /// Processes the OOM killer killed in this cgroup; `None` when the kernel does not say.
    pub(crate) oom_kills: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` events).
    pub(crate) limit_hits: u64,
    /// The limit of the group the cgroup shares with its identity's other cgroups.
    pub(crate) group_limit_bytes: Option<u64>,
    /// Times the group's usage hit the group's limit.
    pub(crate) group_limit_hits: u64,
}

/// One cgroup interface. Creation needs the server's own cgroup; everything else works from a
/// [`KernelCgroup`]'s absolute directories.
pub(crate) trait CgroupDriver: Send + Sync + std::fmt::Debug {
    fn version(&self) -> CgroupVersion;
    /// Creates the cgroup `name` in `group` under the server's `commonlab` parent and applies
    /// `limits`: the runtime's own to it, the totals (`*_total`) to the group, which is created
    /// when missing and updated when it exists; where the host has a devices controller, only
    /// the sandbox's own `/dev` and `devices` (the kernel's granted GPUs) may be opened.
    fn create(
        &self,
        group: &str,
        name: &str,
        limits: &SandboxLimits,
        devices: &[PathBuf],
    ) -> Result<KernelCgroup, String>;
    /// The `cgroup.procs` files a process writes its pid to, to join every controller.
    fn procs_files(&self, cgroup: &KernelCgroup) -> Vec<PathBuf> {
        cgroup
            .dirs
            .values()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }
    /// The processes in the cgroup now.
    fn pids(&self, cgroup: &KernelCgroup) -> Vec<i32>;
    fn memory(&self, cgroup: &KernelCgroup) -> MemoryUse;
    /// Removes the (empty) cgroup directories, and its group's when no other cgroup is left in
    /// it; a missing one is not an error.
    fn remove(&self, cgroup: &KernelCgroup) -> std::io::Result<()> {
        for dir in cgroup.dirs.values() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let _groups = groups_lock();
        for group in cgroup.dirs.values().filter_map(|dir| group_of(dir)) {
            let is_group = group
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(GROUP_PREFIX));
            // Still holding another runtime's cgroup (busy), or already gone: either is fine.
            if is_group {
                let _ = std::fs::remove_dir(group);
            }
        }
        Ok(())
    }
}

/// What every group's name starts with.
const GROUP_PREFIX: &str = "uid-";

/// The group of the runtimes of `uid`.
pub(crate) fn group_name(uid: u32) -> String {
    format!("{GROUP_PREFIX}{uid}")
}

/// Held while a group is set up with a runtime's cgroup in it, and while an empty group is
/// removed, so a runtime never lands in a group removed under it (which `create_dir_all`
/// would bring back without its totals).
fn groups_lock() -> std::sync::MutexGuard<'static, ()> {
    static GROUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The driver for the host under `root` (normally `/sys/fs/cgroup`): v2 when the unified tree
/// carries the memory controller, else v1 when the memory, cpu and pids trees are mounted.
pub(crate) fn detect(root: &Path) -> Result<Box<dyn CgroupDriver>, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        return Ok(Box::new(V2::new(root, &own)));
    }
    let missing: Vec<&str> = V1_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !root.join(c).join("cgroup.procs").exists())
        .collect();
    if missing.is_empty() {
        return Ok(Box::new(V1::new(root, &own)));
    }
    Err(format!(
        "no usable cgroups under {}: no cgroup v2 memory controller, and the cgroup v1 controllers {} are not mounted",
        root.display(),
        missing.join(", ")
    ))
}

/// The driver that operates on an existing cgroup of `version` (after a server restart).
pub(crate) fn driver_for(version: CgroupVersion, root: &Path) -> Box<dyn CgroupDriver> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    match version {
        CgroupVersion::V1 => Box::new(V1::new(root, &own)),
        CgroupVersion::V2 => Box::new(V2::new(root, &own)),
    }
}

/// The path of this process's cgroup for `controller` (v1) or in the unified tree (`None`),
/// from the text of `/proc/self/cgroup`.
pub(crate) fn own_path(proc_self_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(wanted) => controllers.split(',').any(|c| c == wanted),
        };
        matches.then(|| path.to_owned())
    })
}

fn under(root: &Path, cgroup_path: &str) -> PathBuf {
    root.join(cgroup_path.trim_start_matches('/'))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}

fn read(dir: Option<&Path>, file: &str) -> Option<String> {
    std::fs::read_to_string(dir?.join(file)).ok()
}

fn read_u64(dir: Option<&Path>, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.events` (`oom_kill 3`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_pids(dir: Option<&Path>) -> Vec<i32> {
    read(dir, "cgroup.procs")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating cgroup {}: {e}", dir.display()))
}

/// A runtime's own CPU quota: its limit, never more than its group's total (cgroup v1 refuses a
/// child quota above its parent's).
fn own_millicores(limits: &SandboxLimits) -> Option<u32> {
    match (limits.cpu_millicores_max, limits.cpu_millicores_max_total) {
        (Some(own), Some(total)) => Some(own.min(total)),
        (own, None) => own,
        (None, total) => total,
    }
}

/// The group directory a kernel's cgroup directory sits in.
fn group_of(dir: &Path) -> Option<&Path> {
    dir.parent()
}

/// CFS bandwidth period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Used where mounted: CPU accounting, and the device allowlist.
const V1_OPTIONAL_CONTROLLERS: [&str; 2] = ["cpuacct", "devices"];

/// The character devices bubblewrap's `/dev` holds (null, zero, full, random, urandom, tty,
/// ptmx and the pseudo-terminals), allowed to every kernel, and the tun device (below).
const V1_DEVICES_ALLOWED: [&str; 9] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    // /dev/net/tun, for slirp4netns when the sandbox has egress: it runs in the kernel's cgroup
    // but outside its mount namespace, whose minimal /dev has no such node.
    "c 10:200 rwm",
];

/// `c major:minor rw` for a device node, for `devices.allow`.
fn device_rule(node: &Path) -> Result<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(node)
        .map_err(|e| format!("could not read device {}: {e}", node.display()))?;
    let kind = if meta.file_type().is_char_device() {
        'c'
    } else if meta.file_type().is_block_device() {
        'b'
    } else {
        return Err(format!("{} is not a device node", node.display()));
    };
    let rdev = meta.rdev();
    Ok(format!(
        "{kind} {}:{} rw",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

/// cgroup v1: a directory per controller.
#[derive(Debug)]
pub(crate) struct V1 {
    root: PathBuf,
    /// Controller to this server's own cgroup path in that controller's tree.
    own: BTreeMap<String, String>,
}

impl V1 {
    pub(crate) fn new(root: &Path, proc_self_cgroup: &str) -> V1 {
        let own = V1_CONTROLLERS
            .iter()
            .chain(V1_OPTIONAL_CONTROLLERS.iter())
            .map(|c| {
                let path = own_path(proc_self_cgroup, Some(c)).unwrap_or_else(|| "/".into());
                (c.to_string(), path)
            })
            .collect();
        V1 {
            root: root.to_owned(),
            own,
        }
    }
}

impl CgroupDriver for V1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(
        &self,
        group: &str,
        name: &str,
        limits: &SandboxLimits,
        devices: &[PathBuf],
    ) -> Result<KernelCgroup, String> {
        let mut dirs = BTreeMap::new();
        for (controller, own) in &self.own {
            let tree = self.root.join(controller);
            if !tree.join("cgroup.procs").exists() {
                if V1_OPTIONAL_CONTROLLERS.contains(&controller.as_str()) {
                    continue;
                }
                return Err(format!(
                    "the cgroup v1 {controller} controller is not mounted at {}",
                    tree.display()
                ));
            }
            let dir = under(&tree, own).join("commonlab").join(group).join(name);
            dirs.insert(controller.clone(), dir);
        }
        let cgroup = KernelCgroup {
            version: CgroupVersion::V1,
            dirs,
        };
        let memory = cgroup.dir("memory").expect("memory is required");
        let cpu = cgroup.dir("cpu").expect("cpu is required");
        let _groups = groups_lock();
        // The group first, with its totals, so the kernel is never outside them.
        let memory_group = group_of(memory).expect("under commonlab");
        let cpu_group = group_of(cpu).expect("under commonlab");
        create_dir(memory_group)?;
        create_dir(cpu_group)?;
        // Totals hold only in a hierarchical memory cgroup (always, since Linux 5.16); a fresh
        // group may still be made one on older kernels.
        if read(Some(memory_group), "memory.use_hierarchy").is_some_and(|v| v.trim() == "0") {
            write(memory_group, "memory.use_hierarchy", "1").map_err(|e| {
                format!("{e} (this host's memory cgroups are not hierarchical, so a user's kernels could not share a total)")
            })?;
        }
        let total = limits
            .memory_bytes_max_total
            .map_or("-1".to_owned(), |bytes| bytes.to_string());
        v1_memory_limit(memory_group, &total).map_err(|e| {
            format!("{e} (the memory its other kernels use now is above the total; stop one and start again)")
        })?;
        write(cpu_group, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
        write(
            cpu_group,
            "cpu.cfs_quota_us",
            &cpu_quota_us(limits.cpu_millicores_max_total).to_string(),
        )
        .map_err(|e| {
            format!("{e} (a running kernel of this group has a larger CPU quota; stop it and start again)")
        })?;
        let result = (|| {
            for dir in cgroup.dirs.values() {
                create_dir(dir)?;
            }
            v1_memory_limit(memory, &limits.memory_bytes_max.to_string())?;
            write(cpu, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            write(
                cpu,
                "cpu.cfs_quota_us",
                &cpu_quota_us(own_millicores(limits)).to_string(),
            )?;
            let pids = cgroup.dir("pids").expect("pids is required");
            write(pids, "pids.max", &limits.pids_max.to_string())?;
            if let Some(dir) = cgroup.dir("devices") {
                write(dir, "devices.deny", "a")?;
                for rule in V1_DEVICES_ALLOWED {
                    write(dir, "devices.allow", rule)?;
                }
                for device in devices {
                    write(dir, "devices.allow", &device_rule(device)?)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                // Only the runtime's own directories: the group is set up and stays.
                for dir in cgroup.dirs.values() {
                    let _ = std::fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    fn pids(&self, cgroup: &KernelCgroup) -> Vec<i32> {
        let mut pids = read_pids(cgroup.dir("pids"));
        pids.extend(read_pids(cgroup.dir("memory")));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn memory(&self, cgroup: &KernelCgroup) -> MemoryUse {
        let dir = cgroup.dir("memory");
        let group = dir.and_then(group_of);
        let oom_control = read(dir, "memory.oom_control").unwrap_or_default();
        let limit_bytes = read_u64(dir, "memory.limit_in_bytes");
        let peak_bytes = read_u64(dir, "memory.max_usage_in_bytes");
        let group_limit_bytes = read_u64(group, "memory.limit_in_bytes");
        MemoryUse {
            limit_bytes,
            peak_bytes,
            oom_kills: keyed(&oom_control, "oom_kill"),
            limit_hits: v1_limit_hits(dir, limit_bytes, peak_bytes),
            group_limit_bytes,
            group_limit_hits: v1_limit_hits(
                group,
                group_limit_bytes,
                read_u64(group, "memory.max_usage_in_bytes"),
            ),
        }
    }
}

/// How close to its limit a cgroup's peak must come to count as having reached it: charges
/// are made in batches, so the peak stops short of the limit by up to a batch.
const LIMIT_REACHED_SLACK_BYTES: u64 = 1 << 20;

/// Times a v1 memory cgroup hit its limit: memory alone, or memory plus swap (which, where swap
/// is accounted, is charged first and so is the one that fails). Kernels that keep no such
/// count (recent ones keep it 0) are answered from the peak: once, if it reached the limit.
fn v1_limit_hits(dir: Option<&Path>, limit: Option<u64>, peak: Option<u64>) -> u64 {
    let counted = read_u64(dir, "memory.failcnt").unwrap_or(0)
        + read_u64(dir, "memory.memsw.failcnt").unwrap_or(0);
    if counted > 0 {
        return counted;
    }
    match (limit, peak) {
        (Some(limit), Some(peak)) if peak.saturating_add(LIMIT_REACHED_SLACK_BYTES) >= limit => 1,
        _ => 0,
    }
}

/// Sets a v1 memory cgroup's limit, and memory plus swap to the same (no swap) where swap is
/// accounted. Memory plus swap may never be below memory alone, so which goes first depends on
/// whether the limit rises or falls: one order is tried, then the other.
fn v1_memory_limit(dir: &Path, bytes: &str) -> Result<(), String> {
    let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    let lowering_first = write(dir, "memory.limit_in_bytes", bytes).and_then(|()| {
        if memsw {
            write(dir, "memory.memsw.limit_in_bytes", bytes)
        } else {
            Ok(())
        }
    });
    if lowering_first.is_ok() || !memsw {
        return lowering_first;
    }
    write(dir, "memory.memsw.limit_in_bytes", bytes)?;
    write(dir, "memory.limit_in_bytes", bytes)
}

/// `cpu.cfs_quota_us` for a limit in thousandths of a CPU (`-1`: unlimited).
fn cpu_quota_us(millicores: Option<u32>) -> i64 {
    match millicores {
        Some(m) => (u64::from(m.max(1)) * CPU_PERIOD_US / 1000).max(1000) as i64,
        None => -1,
    }
}

/// cgroup v2: one unified tree.
#[derive(Debug)]
pub(crate) struct V2 {
    root: PathBuf,
    own: String,
}

impl V2 {
    pub(crate) fn new(root: &Path, proc_self_cgroup: &str) -> V2 {
        V2 {
            root: root.to_owned(),
            own: own_path(proc_self_cgroup, None).unwrap_or_else(|| "/".into()),
        }
    }
}

impl CgroupDriver for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    /// cgroup v2 has no devices files (access is a BPF program); the sandbox's mount
    /// namespace, which holds only the granted device nodes, is what confines devices here.
    fn create(
        &self,
        group: &str,
        name: &str,
        limits: &SandboxLimits,
        _devices: &[PathBuf],
    ) -> Result<KernelCgroup, String> {
        let own = under(&self.root, &self.own);
        let parent = own.join("commonlab");
        let group_dir = parent.join(group);
        let dir = group_dir.join(name);
        let cgroup = KernelCgroup {
            version: CgroupVersion::V2,
            dirs: BTreeMap::from([("unified".to_owned(), dir.clone())]),
        };
        let cpu_max = |millicores: Option<u32>| {
            let quota = match millicores {
                Some(_) => cpu_quota_us(millicores).to_string(),
                None => "max".into(),
            };
            format!("{quota} {CPU_PERIOD_US}")
        };
        let _groups = groups_lock();
        // No swap anywhere: where swap is accounted, each level allows none.
        let no_swap = |dir: &Path| {
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", "0")
            } else {
                Ok(())
            }
        };
        create_dir(&parent)?;
        // Controllers must be enabled on every level down to the kernel's cgroup. A non-root
        // cgroup that holds processes cannot delegate them ("no internal processes"); the
        // group holds none, only its kernels' cgroups.
        for level in [&own, &parent] {
            write(level, "cgroup.subtree_control", "+cpu +memory +pids").map_err(|e| {
                format!("{e} (run the server in a cgroup it may delegate from, e.g. a systemd unit with Delegate=yes)")
            })?;
        }
        create_dir(&group_dir)?;
        write(&group_dir, "cgroup.subtree_control", "+cpu +memory +pids")?;
        let total = limits
            .memory_bytes_max_total
            .map_or("max".to_owned(), |bytes| bytes.to_string());
        write(&group_dir, "memory.max", &total)?;
        no_swap(&group_dir)?;
        write(
            &group_dir,
            "cpu.max",
            &cpu_max(limits.cpu_millicores_max_total),
        )?;
        let result = (|| {
            create_dir(&dir)?;
            write(&dir, "memory.max", &limits.memory_bytes_max.to_string())?;
            no_swap(&dir)?;
            write(&dir, "cpu.max", &cpu_max(own_millicores(limits)))?;
            write(&dir, "pids.max", &limits.pids_max.to_string())
        })();
        match result {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn pids(&self, cgroup: &KernelCgroup) -> Vec<i32> {
        read_pids(cgroup.dir("unified"))
    }

    fn memory(&self, cgroup: &KernelCgroup) -> MemoryUse {
        let dir = cgroup.dir("unified");
        let group = dir.and_then(group_of);
        let events = read(dir, "memory.events").unwrap_or_default();
        // The group's own events, not its kernels' (which `memory.events` would add in).
        let group_events = read(group, "memory.events.local")
            .or_else(|| read(group, "memory.events"))
            .unwrap_or_default();
        MemoryUse {
            limit_bytes: read_u64(dir, "memory.max"),
            peak_bytes: read_u64(dir, "memory.peak"),
            oom_kills: keyed(&events, "oom_kill"),
            limit_hits: keyed(&events, "max").unwrap_or(0),
            group_limit_bytes: read_u64(group, "memory.max"),
            group_limit_hits: keyed(&group_events, "max").unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_path_reads_v1_and_v2_lines() {
        let text =
            "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/unified/path\n";
        assert_eq!(
            own_path(text, Some("memory")).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_path(text, Some("cpuacct")).as_deref(), Some("/x"));
        assert_eq!(own_path(text, Some("pids")), None);
        assert_eq!(own_path(text, None).as_deref(), Some("/unified/path"));
    }

    /// The check every driver passes: limits land in the right files, membership and memory
    /// are read back, and removal leaves nothing. `prepare` makes a fake tree look like a real
    /// one after creation (the kernel fills real cgroup directories itself).
    fn check_driver(
        driver: &dyn CgroupDriver,
        prepare: impl Fn(&KernelCgroup),
        before_remove: impl Fn(&KernelCgroup),
    ) {
        let name = format!("k-test-{}", std::process::id());
        let group = format!("uid-test-{}", std::process::id());
        // The kernel's own CPU quota is above the group's total, so it gets the total.
        let limits = SandboxLimits {
            memory_bytes_max: 64 << 20,
            cpu_millicores_max: Some(250),
            pids_max: 9,
            memory_bytes_max_total: Some(96 << 20),
            cpu_millicores_max_total: Some(200),
            ..SandboxLimits::default()
        };
        // /dev/null stands in for a granted GPU's node.
        let cgroup = driver
            .create(&group, &name, &limits, &[PathBuf::from("/dev/null")])
            .expect("create");
        assert_eq!(cgroup.version, driver.version());
        for dir in cgroup.dirs.values() {
            assert!(
                dir.ends_with(format!("commonlab/{group}/{name}")),
                "{}",
                dir.display()
            );
        }
        let value = |controller: &str, file: &str| {
            let dir = cgroup.dir(controller).expect("dir");
            std::fs::read_to_string(dir.join(file))
                .expect("read")
                .trim()
                .to_owned()
        };
        let group_value = |controller: &str, file: &str| {
            let dir = group_of(cgroup.dir(controller).expect("dir")).expect("group");
            std::fs::read_to_string(dir.join(file))
                .expect("read")
                .trim()
                .to_owned()
        };
        match driver.version() {
            CgroupVersion::V1 => {
                assert_eq!(value("memory", "memory.limit_in_bytes"), "67108864");
                assert_eq!(value("cpu", "cpu.cfs_quota_us"), "20000");
                assert_eq!(group_value("memory", "memory.limit_in_bytes"), "100663296");
                assert_eq!(group_value("cpu", "cpu.cfs_quota_us"), "20000");
                if cgroup.dirs.contains_key("devices") {
                    let allowed = value("devices", "devices.list");
                    assert!(!allowed.contains("a *:*"), "{allowed}");
                    assert!(allowed.contains("c 1:3 rw"), "{allowed}");
                    assert!(!allowed.contains("c 195:"), "{allowed}");
                }
            }
            CgroupVersion::V2 => {
                assert_eq!(value("memory", "memory.max"), "67108864");
                assert_eq!(value("cpu", "cpu.max"), "20000 100000");
                assert_eq!(group_value("memory", "memory.max"), "100663296");
                assert_eq!(group_value("cpu", "cpu.max"), "20000 100000");
                assert_eq!(
                    group_value("memory", "cgroup.subtree_control"),
                    "+cpu +memory +pids"
                );
            }
        }
        assert_eq!(value("pids", "pids.max"), "9");
        prepare(&cgroup);
        assert!(driver.pids(&cgroup).is_empty());
        let memory = driver.memory(&cgroup);
        assert_eq!(memory.limit_bytes, Some(64 << 20));
        assert_eq!(memory.group_limit_bytes, Some(96 << 20));
        assert_eq!(memory.oom_kills, Some(0));
        // A second kernel of the group, after a tier change: the group takes the new totals.
        let raised = SandboxLimits {
            memory_bytes_max_total: Some(128 << 20),
            cpu_millicores_max_total: None,
            ..limits.clone()
        };
        let second = driver
            .create(&group, &format!("{name}-2"), &raised, &[])
            .expect("create a second");
        match driver.version() {
            CgroupVersion::V1 => {
                assert_eq!(group_value("memory", "memory.limit_in_bytes"), "134217728");
                assert_eq!(group_value("cpu", "cpu.cfs_quota_us"), "-1");
            }
            CgroupVersion::V2 => {
                assert_eq!(group_value("memory", "memory.max"), "134217728");
                assert_eq!(group_value("cpu", "cpu.max"), "max 100000");
            }
        }
        before_remove(&second);
        driver.remove(&second).expect("remove the second");
        before_remove(&cgroup);
        driver.remove(&cgroup).expect("remove");
        for dir in cgroup.dirs.values() {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
    }

    #[test]
    fn v2_driver_writes_limits_into_a_unified_tree() {
        let root = tempfile::tempdir().expect("tempdir");
        let driver = V2::new(root.path(), "0::/server.service\n");
        check_driver(
            &driver,
            |cgroup| {
                let dir = cgroup.dir("unified").expect("dir");
                std::fs::write(dir.join("cgroup.procs"), "").expect("write");
                std::fs::write(dir.join("memory.events"), "max 0\noom 0\noom_kill 0\n")
                    .expect("write");
            },
            // A fake tree holds files; a real cgroup directory is removed while it lists them.
            |cgroup| {
                let dir = cgroup.dir("unified").expect("dir");
                for entry in std::fs::read_dir(dir).expect("dir") {
                    std::fs::remove_file(entry.expect("entry").path()).expect("rm");
                }
            },
        );
        let own = root.path().join("server.service");
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).expect("read"),
            "+cpu +memory +pids"
        );
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn v1_driver_sets_limits_in_the_real_hierarchy() {
        let root = Path::new("/sys/fs/cgroup");
        let usable = nix::unistd::geteuid().is_root()
            && V1_CONTROLLERS
                .iter()
                .all(|c| root.join(c).join("cgroup.procs").exists());
        if !usable {
            let require = std::env::var("COMMONLAB_TEST_REQUIRE").unwrap_or_default();
            if require.split(',').any(|d| d == "bwrap" || d == "sandbox") {
                panic!(
                    "COMMONLAB_TEST_REQUIRE names the sandbox, but cgroup v1 is not writable here"
                );
            }
            eprintln!("skipped: no writable cgroup v1 hierarchy (needs root)");
            return;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("read");
        let driver = V1::new(root, &own);
        check_driver(&driver, |_| {}, |_| {});
        // The group went with its last runtime.
        for (controller, path) in &driver.own {
            let group = under(&root.join(controller), path)
                .join("commonlab")
                .join(format!("uid-test-{}", std::process::id()));
            assert!(!group.exists(), "{} is left", group.display());
        }
    }

    #[test]
    fn cpu_quota_is_millicores_of_the_period() {
        assert_eq!(cpu_quota_us(Some(500)), 50_000);
        assert_eq!(cpu_quota_us(Some(2000)), 200_000);
        assert_eq!(cpu_quota_us(None), -1);
    }
}
