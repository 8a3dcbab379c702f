//! The launcher every sandboxed kernel starts through: a tiny program run as root that joins the
//! kernel's cgroups, drops to the kernel's unprivileged uid and gid for good, lowers resource
//! limits, checks that the uid can reach every path the sandbox binds, then runs bubblewrap and
//! waits for it, exiting with its status.
//!
//! It is a separate program (the hidden `commonlab sandbox-exec` subcommand) rather than code
//! run between fork and exec, because this workspace forbids `unsafe`; and it joins the cgroups
//! itself, first, so nothing the kernel starts can run outside them even for an instant. It stays
//! as bubblewrap's parent (rather than exec'ing it) so that `--die-with-parent` ties the sandbox
//! to the launcher, not to the server: a restarted server reattaches to kernels still running.
//!
//! ```text
//! sandbox-exec --uid U --gid G [--join FILE]... [--rlimit fsize=N|nofile=N|core=N]...
//!              [--read PATH]... [--write PATH]... [--egress SLIRP4NETNS] [--seccomp]
//!              [--check-only] -- PROGRAM [ARG]...
//! ```
//!
//! With `--seccomp`, PROGRAM must be bubblewrap: the launcher compiles the sandbox's seccomp
//! filter (`seccomp.rs`), puts each of its programs in a memfd that bubblewrap inherits, and
//! passes them with `--add-seccomp-fd`; bubblewrap installs them just before it runs the kernel.
//! A filter that cannot be built stops the launch.
//!
//! With `--egress`, PROGRAM must be bubblewrap, told not to make its own network namespace: the
//! launcher runs it under `unshare` in a user and network namespace of the kernel's uid, waits
//! until bubblewrap has set up (`--info-fd`) while holding the kernel back (`--block-fd`), and
//! lets it go once slirp4netns, run as the kernel's uid, has given that namespace a user-mode
//! route out (`--disable-host-loopback`: the host's loopback services stay unreachable).
//! (A network namespace bubblewrap makes itself belongs to a user namespace no process stays
//! in, which slirp4netns cannot join.)

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{access, setgroups, setresgid, setresuid, AccessFlags, Gid, Uid};

use super::seccomp;

/// The exit status of the launcher when it refuses or fails before exec.
pub(crate) const LAUNCHER_FAILED: i32 = 125;

#[derive(Debug, Default)]
struct Args {
    uid: Option<u32>,
    gid: Option<u32>,
    join: Vec<PathBuf>,
    rlimits: Vec<(Resource, u64)>,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    check_only: bool,
    seccomp: bool,
    egress: Option<PathBuf>,
    command: Vec<OsString>,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        if arg == "--" {
            parsed.command = args.collect();
            break;
        }
        if arg == "--check-only" {
            parsed.check_only = true;
            continue;
        }
        if arg == "--seccomp" {
            parsed.seccomp = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let text = || value.to_string_lossy().into_owned();
        let number = |t: String| t.parse::<u32>().map_err(|e| format!("{arg} {t}: {e}"));
        match arg.as_str() {
            "--uid" => parsed.uid = Some(number(text())?),
            "--gid" => parsed.gid = Some(number(text())?),
            "--join" => parsed.join.push(PathBuf::from(value)),
            "--read" => parsed.read.push(PathBuf::from(value)),
            "--write" => parsed.write.push(PathBuf::from(value)),
            "--egress" => parsed.egress = Some(PathBuf::from(value)),
            "--rlimit" => {
                let t = text();
                let (name, n) = t
                    .split_once('=')
                    .ok_or_else(|| format!("--rlimit {t}: expected NAME=VALUE"))?;
                let resource = match name {
                    "fsize" => Resource::RLIMIT_FSIZE,
                    "nofile" => Resource::RLIMIT_NOFILE,
                    "core" => Resource::RLIMIT_CORE,
                    other => return Err(format!("--rlimit: unknown limit {other}")),
                };
                let n = n.parse().map_err(|e| format!("--rlimit {t}: {e}"))?;
                parsed.rlimits.push((resource, n));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

/// Runs the launcher with `args` (without the program name and subcommand) and returns the exit
/// status to end with: the sandboxed program's (128 + signal when it was killed), 0 after a
/// successful `--check-only`, or [`LAUNCHER_FAILED`] with the reason on standard error.
pub fn sandbox_exec_main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "commonlab sandbox-exec: {message}");
            LAUNCHER_FAILED
        }
    }
}

fn run(args: Vec<OsString>) -> Result<i32, String> {
    let args = parse(args)?;
    let uid = args.uid.ok_or("--uid is required")?;
    let gid = args.gid.ok_or("--gid is required")?;
    if uid == 0 || gid == 0 {
        return Err("refusing to run a kernel as uid or gid 0".into());
    }
    if args.command.is_empty() && !args.check_only {
        return Err("no program after --".into());
    }
    if !args.check_only {
        let pid = std::process::id().to_string();
        for file in &args.join {
            std::fs::write(file, &pid)
                .map_err(|e| format!("joining cgroup {}: {e}", file.display()))?;
        }
    }
    setgroups(&[]).map_err(|e| format!("clearing supplementary groups: {e}"))?;
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    setresgid(gid, gid, gid).map_err(|e| format!("setting gid {gid}: {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setting uid {uid}: {e}"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid() != uid {
        return Err("privileges were not dropped".into());
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    for (resource, value) in &args.rlimits {
        // Only lowering is possible without CAP_SYS_RESOURCE.
        let (_, hard) = getrlimit(*resource).map_err(|e| format!("reading {resource:?}: {e}"))?;
        let value = (*value).min(hard);
        setrlimit(*resource, value, value).map_err(|e| format!("setting {resource:?}: {e}"))?;
    }
    for path in &args.read {
        check_access(path, uid, AccessFlags::R_OK)?;
    }
    for path in &args.write {
        check_access(path, uid, AccessFlags::R_OK | AccessFlags::W_OK)?;
    }
    if let Some(slirp) = &args.egress {
        check_access(slirp, uid, AccessFlags::X_OK)?;
    }
    // Built before anything runs, so a filter that cannot be built fails the check too.
    let filter = if args.seccomp {
        seccomp::programs()?
    } else {
        Vec::new()
    };
    if args.check_only {
        return Ok(0);
    }
    let (seccomp_args, seccomp_fds) = seccomp_fds(&filter)?;
    if let Some(slirp) = &args.egress {
        return run_with_egress(&args.command, seccomp_args, seccomp_fds, slirp, uid, gid);
    }
    let program = Path::new(&args.command[0]);
    let child = std::process::Command::new(program)
        .args(seccomp_args)
        .args(&args.command[1..])
        .spawn();
    // bubblewrap has its copies; nothing else may inherit them.
    drop(seccomp_fds);
    let status = child
        .and_then(|mut child| child.wait())
        .map_err(|e| format!("could not run {}: {e}", program.display()))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Each seccomp program in a memfd the next program started inherits, read from its start, and
/// the bubblewrap options that name them.
fn seccomp_fds(programs: &[Vec<u8>]) -> Result<(Vec<OsString>, Vec<OwnedFd>), String> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    use std::io::{Seek, SeekFrom};
    let mut args = Vec::new();
    let mut fds = Vec::new();
    for program in programs {
        let fd = memfd_create("commonlab-seccomp", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| format!("memfd for the seccomp filter: {e}"))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(program)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| format!("writing the seccomp filter: {e}"))?;
        let fd = OwnedFd::from(file);
        inherit(&fd)?;
        args.push(OsString::from("--add-seccomp-fd"));
        args.push(OsString::from(fd.as_raw_fd().to_string()));
        fds.push(fd);
    }
    Ok((args, fds))
}

/// util-linux's `unshare`, which makes the user and network namespaces egress needs.
const UNSHARE: &str = "/usr/bin/unshare";

/// A pipe whose ends are closed on exec unless [`inherit`] says otherwise.
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Lets the next program started inherit `fd`.
fn inherit(fd: &OwnedFd) -> Result<(), String> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(|_| ())
    .map_err(|e| format!("fcntl: {e}"))
}

/// Reads from `fd` until `done` accepts what was read, or end of file.
fn read_until(fd: OwnedFd, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut file = std::fs::File::from(fd);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !done(&seen) {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

/// Runs bubblewrap (`command`) with a user-mode network: bubblewrap reports the sandbox's pid and
/// waits; slirp4netns joins the sandbox's user and network namespaces and sets up `tap0` with a
/// route out; only then is the kernel let go. slirp4netns ends with the sandbox.
fn run_with_egress(
    command: &[OsString],
    seccomp_args: Vec<OsString>,
    seccomp_fds: Vec<OwnedFd>,
    slirp: &Path,
    uid: Uid,
    gid: Gid,
) -> Result<i32, String> {
    let (info_read, info_write) = pipe()?;
    let (block_read, block_write) = pipe()?;
    inherit(&info_write)?;
    inherit(&block_read)?;
    let program = Path::new(&command[0]);
    let mut bwrap = std::process::Command::new(UNSHARE)
        .args(["--user", "--net"])
        .arg(format!("--map-user={uid}"))
        .arg(format!("--map-group={gid}"))
        .arg("--")
        .arg(program)
        .arg("--info-fd")
        .arg(info_write.as_raw_fd().to_string())
        .arg("--block-fd")
        .arg(block_read.as_raw_fd().to_string())
        .args(seccomp_args)
        .args(&command[1..])
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", program.display()))?;
    // Closed here before slirp4netns starts, so it inherits none of them.
    drop((info_write, block_read, seccomp_fds));
    // bubblewrap reports once its sandbox is set up: the namespaces `unshare` made exist by then.
    let info = read_until(info_read, |seen| {
        serde_json::from_slice::<serde_json::Value>(seen).is_ok()
    });
    if serde_json::from_slice::<serde_json::Value>(&info).is_err() {
        let _ = bwrap.kill();
        let _ = bwrap.wait();
        return Err("bubblewrap did not start the sandbox".into());
    }
    let (ready_read, ready_write) = pipe()?;
    inherit(&ready_write)?;
    // `unshare` became bubblewrap: this pid sits in the user and network namespaces to join.
    let slirp_child = std::process::Command::new(slirp)
        .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
        .arg(format!("--ready-fd={}", ready_write.as_raw_fd()))
        .arg(bwrap.id().to_string())
        .arg("tap0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    drop(ready_write);
    let mut slirp_child = match slirp_child {
        Ok(child) => child,
        Err(e) => {
            let _ = bwrap.kill();
            let _ = bwrap.wait();
            return Err(format!("could not run {}: {e}", slirp.display()));
        }
    };
    let ready = read_until(ready_read, |seen| !seen.is_empty());
    if ready.is_empty() {
        let _ = bwrap.kill();
        let _ = bwrap.wait();
        let _ = slirp_child.kill();
        let _ = slirp_child.wait();
        return Err("slirp4netns could not set up the sandbox's network".into());
    }
    // Let the kernel start: anything written (or the pipe closing) releases bubblewrap.
    let _ = std::fs::File::from(block_write).write_all(b"1");
    let status = bwrap
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    let _ = slirp_child.kill();
    let _ = slirp_child.wait();
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Fails with a message naming the first path component `uid` cannot get through.
fn check_access(path: &Path, uid: Uid, last: AccessFlags) -> Result<(), String> {
    let ancestors: Vec<&Path> = path.ancestors().collect();
    for dir in ancestors.iter().rev().skip(1) {
        let is_last = *dir == path;
        let mut wanted = if is_last { last } else { AccessFlags::X_OK };
        if is_last && std::fs::metadata(dir).map(|m| m.is_dir()).unwrap_or(false) {
            wanted |= AccessFlags::X_OK;
        }
        if let Err(e) = access(*dir, wanted) {
            let mode = std::fs::metadata(dir)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!(" (owner {}, mode {:o})", m.uid(), m.mode() & 0o7777)
                })
                .unwrap_or_default();
            let need = if is_last && last.contains(AccessFlags::W_OK) {
                "write"
            } else if is_last {
                "read"
            } else {
                "search"
            };
            return Err(format!(
                "uid {uid} cannot {need} {}{mode}, needed for {}: {e}; make it readable (a parent directory of mode 0700 hides everything below it) or place it elsewhere",
                dir.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_and_root_is_refused() {
        let args: Vec<OsString> = [
            "--uid",
            "200001",
            "--gid",
            "200001",
            "--join",
            "/cg/procs",
            "--rlimit",
            "fsize=10",
            "--read",
            "/usr",
            "--",
            "bwrap",
            "--x",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let parsed = parse(args).expect("parses");
        assert_eq!(parsed.uid, Some(200001));
        assert_eq!(parsed.join, vec![PathBuf::from("/cg/procs")]);
        assert_eq!(parsed.rlimits, vec![(Resource::RLIMIT_FSIZE, 10)]);
        assert_eq!(
            parsed.command,
            vec![OsString::from("bwrap"), OsString::from("--x")]
        );
        let root: Vec<OsString> = ["--uid", "0", "--gid", "5", "--", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            run(root).unwrap_err(),
            "refusing to run a kernel as uid or gid 0"
        );
    }
}
