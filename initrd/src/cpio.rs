//! The newc ("SVR4 with no CRC", magic `070701`) cpio format the kernel unpacks as an
//! initramfs: a writer with fixed metadata (mtime 0, uid/gid 0, one link) and a reader for
//! tests and for `rdeploy-initrd list`.
//!
//! Each entry: a 110-byte ASCII header (magic and 13 fields of 8 hex digits), the NUL-ended
//! name padded to 4 bytes, the data padded to 4 bytes. The archive ends with `TRAILER!!!`.

use crate::error::Error;

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// One entry to write.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Path inside the archive, without a leading `/`.
    pub name: &'a str,
    /// Type and permission bits.
    pub mode: u32,
    /// Device numbers (major, minor) for device nodes.
    pub rdev: (u32, u32),
    /// File content or link target.
    pub data: &'a [u8],
}

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    pub name: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    namesize: u32,
) {
    out.extend_from_slice(MAGIC);
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    for field in [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ] {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
}

/// Appends one entry. `out` must be 4-byte aligned (it is, between entries).
pub fn write_entry(out: &mut Vec<u8>, ino: u32, entry: &Entry<'_>) {
    let nlink = if entry.mode & S_IFMT == S_IFDIR { 2 } else { 1 };
    header(
        out,
        ino,
        entry.mode,
        nlink,
        entry.data.len() as u32,
        entry.rdev,
        entry.name.len() as u32 + 1,
    );
    out.extend_from_slice(entry.name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(entry.data);
    pad4(out);
}

/// Appends the trailer entry.
pub fn write_trailer(out: &mut Vec<u8>) {
    header(out, 0, 0, 1, 0, (0, 0), TRAILER.len() as u32 + 1);
    out.extend_from_slice(TRAILER.as_bytes());
    out.push(0);
    pad4(out);
}

fn field(archive: &[u8], at: usize, index: usize) -> Result<u32, Error> {
    let start = at + 6 + index * 8;
    let text = archive
        .get(start..start + 8)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| Error::Cpio {
            offset: start,
            message: "truncated header".into(),
        })?;
    u32::from_str_radix(text, 16).map_err(|_| Error::Cpio {
        offset: start,
        message: format!("header field {text:?} is not hexadecimal"),
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads every entry up to the trailer.
pub fn read(archive: &[u8]) -> Result<Vec<OwnedEntry>, Error> {
    let mut at = 0;
    let mut entries = Vec::new();
    loop {
        if archive.get(at..at + 6) != Some(MAGIC.as_slice()) {
            return Err(Error::Cpio {
                offset: at,
                message: "no newc header (magic 070701)".into(),
            });
        }
        let mode = field(archive, at, 1)?;
        let size = field(archive, at, 6)? as usize;
        let rdev = (field(archive, at, 9)?, field(archive, at, 10)?);
        let namesize = field(archive, at, 11)? as usize;
        let name_start = at + HEADER;
        let name = archive
            .get(name_start..name_start + namesize.saturating_sub(1))
            .ok_or_else(|| Error::Cpio {
                offset: name_start,
                message: "truncated name".into(),
            })?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| Error::Cpio {
            offset: name_start,
            message: "name is not UTF-8".into(),
        })?;
        let data_start = align4(name_start + namesize);
        if name == TRAILER {
            return Ok(entries);
        }
        let data = archive
            .get(data_start..data_start + size)
            .ok_or_else(|| Error::Cpio {
                offset: data_start,
                message: format!("{name}: truncated data ({size} bytes expected)"),
            })?;
        entries.push(OwnedEntry {
            name,
            mode,
            rdev,
            data: data.to_vec(),
        });
        at = align4(data_start + size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_kernel_format() {
        let mut out = Vec::new();
        write_entry(
            &mut out,
            1,
            &Entry {
                name: "init",
                mode: S_IFREG | 0o755,
                rdev: (0, 0),
                data: b"#!/bin/sh\n",
            },
        );
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000081ED");
        // name "init\0" (5 bytes) after the 110-byte header, padded to 116.
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..126], b"#!/bin/sh\n");
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn garbage_is_an_error_with_an_offset() {
        let e = read(b"not a cpio archive at all");
        assert!(matches!(e, Err(Error::Cpio { offset: 0, .. })), "{e:?}");
        let mut out = Vec::new();
        write_entry(
            &mut out,
            1,
            &Entry {
                name: "a",
                mode: S_IFREG | 0o644,
                rdev: (0, 0),
                data: b"0123456789",
            },
        );
        out.truncate(out.len() - 8);
        assert!(matches!(read(&out), Err(Error::Cpio { .. })));
    }
}
