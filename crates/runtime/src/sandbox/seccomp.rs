//! The seccomp filter every sandboxed kernel runs under, in the spirit of Docker's default
//! profile: the system calls that profile refuses to a container without capabilities (which a
//! kernel is) are refused here too, so a kernel bug behind one of them cannot be reached from a
//! notebook even though the sandbox's lack of privileges already stops most of them.
//!
//! It is a denylist, kept short and explained: a refused call returns an error (`EPERM`, or
//! `ENOSYS` where that makes programs fall back), never kills, so Python raises a clean
//! `OSError`. Three classic-BPF programs, each handed to bubblewrap with `--add-seccomp-fd`
//! (the kernel runs them all and the strictest answer wins):
//!
//! 1. **Refused** (`EPERM`, built with `seccompiler`): kernel keyrings, kexec, BPF, perf events,
//!    userfaultfd, fanotify, kernel modules, every mount call and chroot, swap, reboot, file
//!    handles, reading other processes' state (`kcmp`, `pidfd_getfd`, `process_madvise`),
//!    setting the clock, accounting and quotas, the kernel log, host and domain names, joining
//!    namespaces, NUMA memory policy, and on x86_64 I/O ports and obsolete calls. With
//!    conditions: `clone` and `unshare` with any namespace flag, `personality` other than the
//!    five values Docker allows, and `socket(AF_VSOCK)` (vsock is not namespaced: it reaches
//!    the hypervisor's host).
//! 2. **Not implemented** (`ENOSYS`, built with `seccompiler`): io_uring, so libraries fall back
//!    to ordinary I/O, and `clone3`, whose flags sit in memory no filter can read, so glibc falls
//!    back to `clone`, whose flags the first program checks.
//! 3. **Unreviewed** (`ENOSYS`, written here): every number from [`FIRST_UNREVIEWED`] up, which
//!    covers system calls newer than this list and, on x86_64, the x32 ABI (numbers with bit 30
//!    set, which would otherwise slip past filters that compare whole numbers).
//!
//! Every program kills the process for a call made through another architecture's entry point
//! (32-bit `int 0x80` on x86_64, AArch32 on aarch64): no notebook makes one, and each program's
//! numbers are only right for the native one.
//!
//! `ptrace`, `process_vm_readv` and `process_vm_writev` stay allowed, as in Docker on kernels
//! from 4.8 on: debuggers and profilers use them, and the PID namespace and the kernel's uid
//! already keep every other process out of reach. So do `name_to_handle_at`, `mknod` (FIFOs)
//! and `clock_adjtime` (reading), which Docker allows.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

type Sysno = libc::c_long;

/// Refused with `EPERM` whatever their arguments.
const REFUSED: &[(&str, Sysno)] = &[
    ("add_key", libc::SYS_add_key),
    ("keyctl", libc::SYS_keyctl),
    ("request_key", libc::SYS_request_key),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("open_tree_attr", SYS_OPEN_TREE_ATTR),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("kcmp", libc::SYS_kcmp),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("process_madvise", libc::SYS_process_madvise),
    ("clock_settime", libc::SYS_clock_settime),
    ("settimeofday", libc::SYS_settimeofday),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("vhangup", libc::SYS_vhangup),
    ("syslog", libc::SYS_syslog),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("setns", libc::SYS_setns),
    ("mbind", libc::SYS_mbind),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("move_pages", libc::SYS_move_pages),
];

/// x86_64's own calls refused with `EPERM`: I/O ports and obsolete interfaces.
#[cfg(target_arch = "x86_64")]
const REFUSED_ARCH: &[(&str, Sysno)] = &[
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("_sysctl", libc::SYS__sysctl),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
];
#[cfg(not(target_arch = "x86_64"))]
const REFUSED_ARCH: &[(&str, Sysno)] = &[];

/// Answered with `ENOSYS`, which programs take as "fall back".
const NOT_IMPLEMENTED: &[(&str, Sysno)] = &[
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("clone3", libc::SYS_clone3),
];

/// Linux 6.15's `open_tree_attr`, the same number on every architecture (from 424 on they share
/// one table); the libc crate does not name it yet.
const SYS_OPEN_TREE_ATTR: Sysno = 467;

/// The first system call number this list was not reviewed against: 469 (`file_setattr`,
/// Linux 6.17) is the last one known. x86_64 and aarch64 number everything below it (x32's
/// numbers have bit 30 set, far above).
pub(crate) const FIRST_UNREVIEWED: u32 = 470;

/// Every namespace flag of `clone` (Docker's mask, `0x7E020000`).
const CLONE_NAMESPACES: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The `personality` values Docker allows: `PER_LINUX`, `UNAME26`, `PER_LINUX32`, both, and the
/// query `0xffffffff`. Anything else (`ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`, ...) is refused.
const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `struct seccomp_data`: `nr` at 0, `arch` at 4.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
/// Classic BPF opcodes (`linux/bpf_common.h`): `BPF_LD | BPF_W | BPF_ABS`,
/// `BPF_JMP | BPF_JEQ | BPF_K`, `BPF_JMP | BPF_JGE | BPF_K`, `BPF_RET | BPF_K`.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// This machine's architecture, for the filter's arch checks.
fn native() -> Result<(TargetArch, u32), String> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, AUDIT_ARCH_X86_64)),
        "aarch64" => Ok((TargetArch::aarch64, AUDIT_ARCH_AARCH64)),
        other => Err(format!(
            "the sandbox's seccomp filter knows the system calls of x86_64 and aarch64, not {other}; sandboxed kernels cannot start on this architecture"
        )),
    }
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    // Every argument checked is an `int` or has its meaning in the low 32 bits (the kernel
    // truncates `clone`'s flags), so the high half cannot be used to slip past.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// One rule per flag: the call matches when any of `flags` is set in argument `arg`.
fn any_flag(arg: u8, flags: &[libc::c_int]) -> Result<Vec<SeccompRule>, String> {
    flags
        .iter()
        .map(|&flag| {
            let flag = u64::from(flag as u32);
            rule(vec![condition(arg, SeccompCmpOp::MaskedEq(flag), flag)?])
        })
        .collect()
}

fn compile(
    rules: BTreeMap<Sysno, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// The three programs, in the order bubblewrap installs them.
pub(crate) fn build() -> Result<Vec<BpfProgram>, String> {
    let (arch, audit_arch) = native()?;
    let mut refused: BTreeMap<Sysno, Vec<SeccompRule>> = REFUSED
        .iter()
        .chain(REFUSED_ARCH)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    refused.insert(libc::SYS_clone, any_flag(0, &CLONE_NAMESPACES)?);
    let mut unshare_flags = CLONE_NAMESPACES.to_vec();
    unshare_flags.push(libc::CLONE_NEWTIME);
    refused.insert(libc::SYS_unshare, any_flag(0, &unshare_flags)?);
    let personality = PERSONALITY_ALLOWED
        .iter()
        .map(|&value| condition(0, SeccompCmpOp::Ne, value))
        .collect::<Result<Vec<_>, _>>()?;
    refused.insert(libc::SYS_personality, vec![rule(personality)?]);
    refused.insert(
        libc::SYS_socket,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::Eq,
            libc::AF_VSOCK as u64,
        )?])?],
    );
    let not_implemented = NOT_IMPLEMENTED
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    Ok(vec![
        compile(refused, libc::EPERM, arch)?,
        compile(not_implemented, libc::ENOSYS, arch)?,
        unreviewed(audit_arch),
    ])
}

/// `ENOSYS` for every number from [`FIRST_UNREVIEWED`] up; the process killed for another
/// architecture's calls, as `seccompiler`'s programs do.
fn unreviewed(audit_arch: u32) -> BpfProgram {
    let op = |code: u16, k: u32, jt: u8, jf: u8| sock_filter { code, jt, jf, k };
    vec![
        op(BPF_LD_W_ABS, DATA_ARCH, 0, 0),
        op(BPF_JMP_JEQ_K, audit_arch, 1, 0),
        op(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        op(BPF_LD_W_ABS, DATA_NR, 0, 0),
        op(BPF_JMP_JGE_K, FIRST_UNREVIEWED, 0, 1),
        op(
            BPF_RET_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            0,
            0,
        ),
        op(BPF_RET_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ]
}

/// A program as the kernel (and bubblewrap) reads it: the `struct sock_filter` array in native
/// byte order.
pub(crate) fn to_bytes(program: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        bytes.extend_from_slice(&instruction.code.to_ne_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend_from_slice(&instruction.k.to_ne_bytes());
    }
    bytes
}

/// The filter, as the bytes of each program to hand to bubblewrap.
pub(crate) fn programs() -> Result<Vec<Vec<u8>>, String> {
    Ok(build()?.iter().map(|p| to_bytes(p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel does with one call: every program runs, the strictest answer wins
    /// (kill, then errno, then allow; `SECCOMP_RET_ACTION_FULL`'s order).
    fn verdict(programs: &[BpfProgram], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let rank = |ret: u32| match ret & 0xffff_0000 {
            libc::SECCOMP_RET_KILL_PROCESS => 0,
            libc::SECCOMP_RET_KILL_THREAD => 1,
            libc::SECCOMP_RET_ERRNO => 3,
            libc::SECCOMP_RET_ALLOW => 9,
            other => panic!("unexpected action {other:#x}"),
        };
        programs
            .iter()
            .map(|program| run(&to_bytes(program), &data))
            .min_by_key(|&ret| rank(ret))
            .expect("at least one program")
    }

    /// A classic-BPF interpreter for the instructions seccomp programs use, reading the
    /// program from the bytes bubblewrap is given.
    fn run(bytes: &[u8], data: &[u8]) -> u32 {
        assert!(bytes.len().is_multiple_of(8));
        assert!(bytes.len() / 8 <= 4096, "the kernel takes at most 4096");
        let program: Vec<sock_filter> = bytes
            .chunks(8)
            .map(|c| sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = &program[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { ins.jt } else { ins.jf });
            match ins.code {
                0x20 => {
                    let at = ins.k as usize;
                    assert!(at.is_multiple_of(4) && at + 4 <= data.len(), "load at {at}");
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => acc &= ins.k,
                0x05 => pc += ins.k as usize,
                0x15 => pc += jump(acc == ins.k),
                0x25 => pc += jump(acc > ins.k),
                0x35 => pc += jump(acc >= ins.k),
                0x45 => pc += jump(acc & ins.k != 0),
                0x06 => return ins.k,
                other => panic!("instruction {other:#x} not interpreted"),
            }
            assert!(pc < program.len(), "ran off the end");
        }
    }

    fn native_arch() -> u32 {
        native().expect("a supported architecture").1
    }

    fn call(programs: &[BpfProgram], nr: Sysno, args: [u64; 6]) -> u32 {
        verdict(programs, native_arch(), nr as u32, args)
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    /// The names and numbers of the calls refused whatever their arguments, and the errno.
    fn unconditional() -> impl Iterator<Item = (&'static str, Sysno, i32)> {
        let refused = REFUSED.iter().chain(REFUSED_ARCH);
        refused.map(|&(name, nr)| (name, nr, libc::EPERM)).chain(
            NOT_IMPLEMENTED
                .iter()
                .map(|&(name, nr)| (name, nr, libc::ENOSYS)),
        )
    }

    #[test]
    fn the_listed_calls_are_refused_with_their_errno() {
        let programs = build().expect("builds");
        assert_eq!(programs.len(), 3);
        let names: Vec<&str> = unconditional().map(|(name, _, _)| name).collect();
        for family in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "bpf",
            "mount",
            "umount2",
            "pivot_root",
            "swapon",
            "swapoff",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "clock_settime",
            "settimeofday",
            "acct",
            "quotactl",
            "lookup_dcookie",
            "vhangup",
            "nfsservctl",
            "setns",
            "clone3",
        ] {
            assert!(names.contains(&family), "{family} is not refused");
        }
        for (name, nr, errno) in unconditional() {
            let want = libc::SECCOMP_RET_ERRNO | errno as u32;
            for args in [[0; 6], [u64::MAX; 6]] {
                assert_eq!(call(&programs, nr, args), want, "{name} with {args:?}");
            }
        }
    }

    #[test]
    fn namespaces_personalities_and_vsock_are_refused_by_argument() {
        let programs = build().expect("builds");
        let sigchld = libc::SIGCHLD as u64;
        for flag in CLONE_NAMESPACES {
            let flag = u64::from(flag as u32);
            assert_eq!(
                call(&programs, libc::SYS_clone, [flag | sigchld, 0, 0, 0, 0, 0]),
                EPERM
            );
            // The kernel reads the low 32 bits only; high bits change nothing.
            let high = flag | 0xffff_ffff_0000_0000;
            assert_eq!(
                call(&programs, libc::SYS_clone, [high, 0, 0, 0, 0, 0]),
                EPERM
            );
            assert_eq!(
                call(&programs, libc::SYS_unshare, [flag, 0, 0, 0, 0, 0]),
                EPERM
            );
        }
        let newtime = libc::CLONE_NEWTIME as u64;
        assert_eq!(
            call(&programs, libc::SYS_unshare, [newtime, 0, 0, 0, 0, 0]),
            EPERM
        );
        let addr_no_randomize = 0x0040000;
        let read_implies_exec = 0x0400000;
        for persona in [
            addr_no_randomize,
            read_implies_exec,
            0x1,
            0x1_0000_0000 | 0x0040000,
        ] {
            assert_eq!(
                call(&programs, libc::SYS_personality, [persona, 0, 0, 0, 0, 0]),
                EPERM
            );
        }
        let vsock = libc::AF_VSOCK as u64;
        assert_eq!(
            call(&programs, libc::SYS_socket, [vsock, 1, 0, 0, 0, 0]),
            EPERM
        );
    }

    #[test]
    fn the_usual_calls_are_allowed() {
        let programs = build().expect("builds");
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u32;
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u32;
        let vfork = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u32;
        let mut calls: Vec<(&str, Sysno, u64)> = vec![
            ("read", libc::SYS_read, 0),
            ("write", libc::SYS_write, 1),
            ("openat", libc::SYS_openat, 0),
            ("close", libc::SYS_close, 3),
            ("mmap", libc::SYS_mmap, 0),
            ("mprotect", libc::SYS_mprotect, 0),
            ("futex", libc::SYS_futex, 0),
            ("execve", libc::SYS_execve, 0),
            ("wait4", libc::SYS_wait4, u64::MAX),
            ("kill", libc::SYS_kill, 1),
            ("rt_sigaction", libc::SYS_rt_sigaction, 10),
            ("getpid", libc::SYS_getpid, 0),
            ("prctl", libc::SYS_prctl, 0),
            ("seccomp", libc::SYS_seccomp, 0),
            ("ptrace", libc::SYS_ptrace, 0),
            ("process_vm_readv", libc::SYS_process_vm_readv, 1),
            ("name_to_handle_at", libc::SYS_name_to_handle_at, 0),
            ("mknodat", libc::SYS_mknodat, 0),
            ("clock_adjtime", libc::SYS_clock_adjtime, 0),
            ("memfd_create", libc::SYS_memfd_create, 0),
            ("pidfd_open", libc::SYS_pidfd_open, 1),
            ("statx", libc::SYS_statx, 0),
            ("rseq", libc::SYS_rseq, 0),
            ("clone (thread)", libc::SYS_clone, u64::from(thread)),
            ("clone (fork)", libc::SYS_clone, u64::from(fork)),
            ("clone (vfork)", libc::SYS_clone, u64::from(vfork)),
            (
                "unshare (files)",
                libc::SYS_unshare,
                libc::CLONE_FILES as u64,
            ),
            ("personality (query)", libc::SYS_personality, 0xffff_ffff),
            ("personality (linux)", libc::SYS_personality, 0),
            ("socket (inet)", libc::SYS_socket, libc::AF_INET as u64),
            ("socket (unix)", libc::SYS_socket, libc::AF_UNIX as u64),
            (
                "socket (netlink)",
                libc::SYS_socket,
                libc::AF_NETLINK as u64,
            ),
            ("last reviewed", Sysno::from(FIRST_UNREVIEWED - 1), 0),
        ];
        if cfg!(target_arch = "x86_64") {
            calls.push(("arch_prctl", 158, 0));
        }
        for (name, nr, arg0) in calls {
            assert_eq!(call(&programs, nr, [arg0, 0, 0, 0, 0, 0]), ALLOW, "{name}");
        }
    }

    #[test]
    fn unreviewed_numbers_x32_and_foreign_architectures() {
        let programs = build().expect("builds");
        for nr in [
            FIRST_UNREVIEWED,
            600,
            0x4000_0000 | 39,
            0x4000_0000 | 425,
            u32::MAX,
        ] {
            assert_eq!(
                verdict(&programs, native_arch(), nr, [0; 6]),
                ENOSYS,
                "{nr:#x}"
            );
        }
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
        for arch in [
            AUDIT_ARCH_I386,
            AUDIT_ARCH_ARM,
            AUDIT_ARCH_X86_64,
            AUDIT_ARCH_AARCH64,
        ] {
            if arch == native_arch() {
                continue;
            }
            // getpid on i386 is 20: it must not be judged by the native table.
            assert_eq!(
                verdict(&programs, arch, 20, [0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS,
                "{arch:#x}"
            );
        }
    }

    #[test]
    fn programs_are_whole_instructions_in_native_order() {
        let programs = programs().expect("builds");
        for bytes in &programs {
            assert!(!bytes.is_empty() && bytes.len().is_multiple_of(8));
            // The first instruction loads the architecture (offset 4).
            assert_eq!(u16::from_ne_bytes([bytes[0], bytes[1]]), BPF_LD_W_ABS);
            assert_eq!(
                u32::from_ne_bytes(bytes[4..8].try_into().unwrap()),
                DATA_ARCH
            );
        }
    }
}
