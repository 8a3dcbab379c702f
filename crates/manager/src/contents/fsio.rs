//! File-system helpers for contents: atomic writes, base64 as Python's `encodebytes` writes it,
//! MIME types as Python's `mimetypes` guesses them, and timestamps as jupyter_server prints them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// Opens `path`, which must lie under the directory `root`, resolving it beneath `root` in one
/// system call (`openat2` with `RESOLVE_BENEATH`): a symlink that leads out of `root`, however
/// it got there and whenever it was swapped in, fails with `EXDEV` instead of being followed.
pub(crate) fn open_beneath(
    root: &Path,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let relative = path
        .strip_prefix(root)
        .map_err(|_| io::Error::from_raw_os_error(rustix::io::Errno::XDEV.raw_os_error()))?;
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    // openat2 refuses a mode without O_CREAT.
    let mode = if flags.contains(OFlags::CREATE) {
        mode
    } else {
        Mode::empty()
    };
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The kernel asks for a retry when a rename raced the lookup; a user renaming in a loop
    // gets an error after a few, never a path outside.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            &root_fd,
            relative,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            result => return Ok(result?),
        }
    }
}

/// Opens the file `path` under `root` for reading (see [`open_beneath`]).
pub(crate) fn read_beneath(root: &Path, path: &Path) -> io::Result<File> {
    open_beneath(root, path, OFlags::RDONLY, Mode::empty()).map(File::from)
}

/// Reads the whole file `path` under `root` (see [`open_beneath`]).
pub(crate) fn read_all_beneath(root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    read_beneath(root, path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The metadata of `path` under `root`, symlinks followed only while they stay beneath `root`.
pub(crate) fn metadata_beneath(root: &Path, path: &Path) -> io::Result<fs::Metadata> {
    File::from(open_beneath(root, path, OFlags::PATH, Mode::empty())?).metadata()
}

/// The metadata of `path` itself under `root` (a symlink is not followed), its directories
/// resolved beneath `root`.
pub(crate) fn symlink_metadata_beneath(root: &Path, path: &Path) -> io::Result<fs::Metadata> {
    File::from(open_beneath(
        root,
        path,
        OFlags::PATH | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
    .metadata()
}

/// Creates the directory `path` under `root`, its parent opened beneath `root`.
pub(crate) fn create_dir_beneath(root: &Path, path: &Path) -> io::Result<()> {
    let dir = dir_beneath(root, path.parent().unwrap_or(root))?;
    Ok(rustix::fs::mkdirat(
        &dir,
        file_name(path)?,
        Mode::from_raw_mode(0o755),
    )?)
}

/// Removes the directory `path` under `root` and everything in it, every step relative to a
/// descriptor opened beneath `root`; symlinks inside are removed, never followed.
pub(crate) fn remove_dir_all_beneath(root: &Path, path: &Path) -> io::Result<()> {
    for name in list_beneath(root, path)? {
        let entry = path.join(&name);
        if symlink_metadata_beneath(root, &entry)?.is_dir() {
            remove_dir_all_beneath(root, &entry)?;
        } else {
            remove_file_beneath(root, &entry)?;
        }
    }
    let parent = dir_beneath(root, path.parent().unwrap_or(root))?;
    Ok(rustix::fs::unlinkat(
        &parent,
        file_name(path)?,
        AtFlags::REMOVEDIR,
    )?)
}

/// The names in the directory `dir` under `root` (`.` and `..` left out), read from a
/// descriptor opened beneath `root`.
pub(crate) fn list_beneath(root: &Path, dir: &Path) -> io::Result<Vec<String>> {
    let fd = open_beneath(root, dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        match entry.file_name().to_str() {
            Ok("." | "..") => {}
            Ok(name) => names.push(name.to_owned()),
            // Names that are not UTF-8 cannot be API paths; they are not listed.
            Err(_) => {}
        }
    }
    Ok(names)
}

/// The directory `dir` under `root`, opened for `*at` calls (see [`open_beneath`]).
fn dir_beneath(root: &Path, dir: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
}

fn file_name(path: &Path) -> io::Result<&std::ffi::OsStr> {
    path.file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path without a file name"))
}

/// Writes `path` (under `root`) atomically: the bytes go to a temporary file in the same
/// directory, which is flushed to disk and then renamed over `path`. A failure before the rename
/// leaves `path` as it was and removes the temporary file; a crash leaves at most a hidden
/// temporary file behind. The directory is opened beneath `root` once and every step is relative
/// to it, so the write cannot land outside `root`.
pub(crate) fn atomic_write(root: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(root, path, |file| file.write_all(bytes))
}

/// [`atomic_write`] with the content written by `fill`.
pub(crate) fn atomic_write_with(
    root: &Path,
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = dir_beneath(root, path.parent().unwrap_or(root))?;
    let name = file_name(path)?;
    let (tmp_name, mut file) = create_temp(&dir, &name.to_string_lossy(), "save")?;
    let result = (|| {
        if let Ok(existing) = rustix::fs::statat(&dir, name, AtFlags::empty()) {
            file.set_permissions(fs::Permissions::from_mode(existing.st_mode & 0o7777))?;
        }
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        rustix::fs::renameat(&dir, &tmp_name, &dir, name)?;
        let _ = rustix::fs::fsync(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
    }
    result
}

/// Moves `from` to `to`, both under `root`, each directory opened beneath `root`.
pub(crate) fn rename_beneath(root: &Path, from: &Path, to: &Path) -> io::Result<()> {
    let from_dir = dir_beneath(root, from.parent().unwrap_or(root))?;
    let to_dir = dir_beneath(root, to.parent().unwrap_or(root))?;
    rustix::fs::renameat(&from_dir, file_name(from)?, &to_dir, file_name(to)?)?;
    let _ = rustix::fs::fsync(&to_dir);
    Ok(())
}

/// Removes the file (or symlink) `path` under `root`, its directory opened beneath `root`.
pub(crate) fn remove_file_beneath(root: &Path, path: &Path) -> io::Result<()> {
    let dir = dir_beneath(root, path.parent().unwrap_or(root))?;
    Ok(rustix::fs::unlinkat(
        &dir,
        file_name(path)?,
        AtFlags::empty(),
    )?)
}

/// A new hidden file beside `name` in `dir`, named so the listing never shows it.
pub(crate) fn create_temp(dir: &OwnedFd, name: &str, purpose: &str) -> io::Result<(String, File)> {
    loop {
        let tmp_name = format!("{TEMP_PREFIX}{name}.{}.{purpose}", rand::random::<u32>());
        match rustix::fs::openat(
            dir,
            &tmp_name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => return Ok((tmp_name, File::from(fd))),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Temporary files of saves and uploads start with this; hidden, never listed.
pub(crate) const TEMP_PREFIX: &str = ".~";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Python's `base64.encodebytes`: lines of 76 characters, each ending in a newline.
pub(crate) fn base64_encode_lines(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 57 + 4);
    for line in bytes.chunks(57) {
        for chunk in line.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            out.push(B64[(n >> 18) as usize & 63] as char);
            out.push(B64[(n >> 12) as usize & 63] as char);
            out.push(if chunk.len() > 1 {
                B64[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            out.push(if chunk.len() > 2 {
                B64[n as usize & 63] as char
            } else {
                '='
            });
        }
        out.push('\n');
    }
    out
}

/// Decodes base64, skipping whitespace (as Python's `decodebytes` does with line breaks).
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            c if c.is_ascii_whitespace() => continue,
            _ => return Err(format!("invalid base64 character at offset {i}")),
        };
        if padding {
            return Err(format!("base64 data after padding at offset {i}"));
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits == 6 {
        return Err("truncated base64 data".into());
    }
    Ok(out)
}

/// The MIME type Python's `mimetypes.guess_type` gives for common extensions, or `None`.
pub(crate) fn guess_mimetype(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "py" => "text/x-python",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        "sh" => "text/x-sh",
        "c" => "text/x-csrc",
        "h" => "text/x-chdr",
        "cpp" => "text/x-c++src",
        "java" => "text/x-java",
        "tex" => "text/x-tex",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "wav" => "audio/x-wav",
        _ => return None,
    })
}

/// A timestamp as jupyter_server prints it: ISO 8601 in UTC, microseconds only when non-zero.
pub(crate) fn iso_time(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    let micros =
        time.timestamp() * 1_000_000 + i64::from((time.timestamp_subsec_nanos() + 500) / 1000);
    let time = chrono::DateTime::from_timestamp_micros(micros).unwrap_or(time);
    if time.timestamp_subsec_micros() == 0 {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_python_encodebytes() {
        assert_eq!(base64_encode_lines(b""), "");
        assert_eq!(base64_encode_lines(b"a"), "YQ==\n");
        assert_eq!(base64_encode_lines(b"ab"), "YWI=\n");
        assert_eq!(base64_encode_lines(b"abc"), "YWJj\n");
        let long = vec![0xffu8; 58];
        let encoded = base64_encode_lines(&long);
        let lines: Vec<&str> = encoded.lines().collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines[1], "/w==");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode_lines(&all)).unwrap(), all);
        assert!(base64_decode("YQ=x").is_err());
        assert!(base64_decode("Y").is_err());
        assert!(base64_decode("Y*==").is_err());
    }

    #[test]
    fn failure_before_rename_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nb.ipynb");
        fs::write(&path, b"original").unwrap();
        // A save that dies half-way through writing.
        let err = atomic_write_with(dir.path(), &path, |file| {
            file.write_all(b"half a no")?;
            Err(io::Error::other("killed mid-save"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "killed mid-save");
        assert_eq!(fs::read(&path).unwrap(), b"original");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file is removed");
        atomic_write(dir.path(), &path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        fs::write(&path, b"#!/bin/sh").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o751)).unwrap();
        atomic_write(dir.path(), &path, b"#!/bin/sh\necho").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o751
        );
    }

    #[test]
    fn nothing_leaves_the_root_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dir")).unwrap();
        fs::create_dir(root.join("inside")).unwrap();
        fs::write(root.join("inside/f"), b"f").unwrap();
        std::os::unix::fs::symlink("inside/f", root.join("relative")).unwrap();
        let exdev = |e: io::Error| e.raw_os_error() == Some(libc_exdev());
        assert!(exdev(
            read_all_beneath(root, &root.join("link")).unwrap_err()
        ));
        assert!(exdev(
            read_all_beneath(root, &root.join("dir/secret")).unwrap_err()
        ));
        assert!(exdev(
            atomic_write(root, &root.join("dir/new"), b"x").unwrap_err()
        ));
        assert!(exdev(
            rename_beneath(root, &root.join("inside/f"), &root.join("dir/f")).unwrap_err()
        ));
        assert!(!outside.path().join("new").exists() && !outside.path().join("f").exists());
        assert!(exdev(read_all_beneath(root, outside.path()).unwrap_err()));
        // Links that stay inside are followed.
        assert_eq!(
            read_all_beneath(root, &root.join("relative")).unwrap(),
            b"f"
        );
    }

    fn libc_exdev() -> i32 {
        rustix::io::Errno::XDEV.raw_os_error()
    }

    #[test]
    fn times_print_like_jupyter_server() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20Z");
        let t = t + std::time::Duration::from_nanos(1_500);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20.000002Z");
    }
}
