//! File-system helpers for contents: atomic writes, base64 as Python's `encodebytes` writes it,
//! MIME types as Python's `mimetypes` guesses them, and timestamps as jupyter_server prints them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes `path` atomically: the bytes go to a temporary file in the same directory, which is
/// flushed to disk and then renamed over `path`. A failure before the rename leaves `path` as it
/// was and removes the temporary file; a crash leaves at most a hidden temporary file behind.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |file| file.write_all(bytes))
}

/// [`atomic_write`] with the content written by `fill`.
pub(crate) fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp_path, mut file) = create_temp(dir, &name, "save")?;
    let result = (|| {
        if let Ok(existing) = fs::metadata(path) {
            file.set_permissions(fs::Permissions::from_mode(
                existing.permissions().mode() & 0o7777,
            ))?;
        }
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// A new hidden file beside `name` in `dir`, named so the listing never shows it.
pub(crate) fn create_temp(dir: &Path, name: &str, purpose: &str) -> io::Result<(PathBuf, File)> {
    loop {
        let tmp_path = dir.join(format!(".~{name}.{}.{purpose}", rand::random::<u32>()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
        {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Flushes a directory's entries (the rename) to disk; best effort.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

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
        let err = atomic_write_with(&path, |file| {
            file.write_all(b"half a no")?;
            Err(io::Error::other("killed mid-save"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "killed mid-save");
        assert_eq!(fs::read(&path).unwrap(), b"original");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file is removed");
        atomic_write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        fs::write(&path, b"#!/bin/sh").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o751)).unwrap();
        atomic_write(&path, b"#!/bin/sh\necho").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o751
        );
    }

    #[test]
    fn times_print_like_jupyter_server() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20Z");
        let t = t + std::time::Duration::from_nanos(1_500);
        assert_eq!(iso_time(t), "2023-11-14T22:13:20.000002Z");
    }
}
