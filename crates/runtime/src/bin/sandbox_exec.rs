//! The sandbox launcher as a program of its own, for this crate's tests and for hosts that
//! install it apart from the server; `commonlab sandbox-exec` is the same code.

fn main() -> std::process::ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let code = commonlab_runtime::sandbox_exec_main(args);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(255))
}
