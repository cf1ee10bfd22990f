//! The initramfs as a data model: a sorted map from absolute path to member, rendered to a
//! newc cpio archive and compressed, deterministically (same members, same bytes).
//!
//! Nothing here reads the host: [`crate::build`] decides what goes in, this module only
//! holds it and renders it. Every member gets mtime 0 and uid/gid 0; parents are always
//! present (added as `0755` directories when a member is inserted); members are written in
//! path order, so a parent always comes before its children.

use std::collections::BTreeMap;
use std::io::Write;

use crate::cpio;
use crate::error::Error;

/// One entry of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A directory.
    Dir { mode: u32 },
    /// A regular file with its content.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link to `target` (as written, relative or absolute).
    Symlink { target: String },
    /// A character device node (`/dev/console` must exist before devtmpfs is mounted).
    CharDev { mode: u32, major: u32, minor: u32 },
}

impl Member {
    /// A regular file, `0644`.
    pub fn file(data: impl Into<Vec<u8>>) -> Member {
        Member::File {
            mode: 0o644,
            data: data.into(),
        }
    }

    /// An executable regular file, `0755`.
    pub fn exec(data: impl Into<Vec<u8>>) -> Member {
        Member::File {
            mode: 0o755,
            data: data.into(),
        }
    }

    /// Size in bytes of what the archive holds for this member.
    pub fn size(&self) -> u64 {
        match self {
            Member::File { data, .. } => data.len() as u64,
            Member::Symlink { target } => target.len() as u64,
            Member::Dir { .. } | Member::CharDev { .. } => 0,
        }
    }
}

/// The image: absolute paths (`/usr/bin/busybox`) to members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    members: BTreeMap<String, Member>,
}

/// Compression of the rendered archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd, level 19, one thread (deterministic), with a checksum: the default; kernels
    /// since 5.9 unpack it (`CONFIG_RD_ZSTD`, on in Debian, Ubuntu, RHEL 9).
    Zstd,
    /// gzip, level 9, no name, mtime 0: every kernel can unpack it.
    Gzip,
    /// The bare cpio archive.
    None,
}

impl Image {
    /// An empty image (no root entry: the kernel's rootfs is the root).
    pub fn new() -> Image {
        Image::default()
    }

    /// Inserts `member` at `path` (absolute, normalised: no `.`/`..`, no trailing `/`),
    /// creating missing parents as `0755` directories. Replaces an existing member, except
    /// that a directory is never replaced by a directory (the first mode wins).
    pub fn insert(&mut self, path: &str, member: Member) -> Result<(), Error> {
        check_path(path)?;
        let mut parent = String::new();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            parent.push('/');
            parent.push_str(part);
            match self.members.get(&parent) {
                None => {
                    self.members
                        .insert(parent.clone(), Member::Dir { mode: 0o755 });
                }
                Some(Member::Dir { .. }) | Some(Member::Symlink { .. }) => {}
                Some(_) => {
                    return Err(Error::NotADirectory {
                        path: path.to_owned(),
                        parent: parent.clone(),
                    })
                }
            }
        }
        if matches!(member, Member::Dir { .. })
            && matches!(self.members.get(path), Some(Member::Dir { .. }))
        {
            return Ok(());
        }
        self.members.insert(path.to_owned(), member);
        Ok(())
    }

    /// The member at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Member> {
        self.members.get(path)
    }

    /// Whether there is a member at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.members.contains_key(path)
    }

    /// All members in path order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.members.iter().map(|(p, m)| (p.as_str(), m))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Total bytes of file contents and link targets.
    pub fn content_bytes(&self) -> u64 {
        self.members.values().map(Member::size).sum()
    }

    /// The newc cpio archive: members in path order (paths without the leading `/`), then
    /// the trailer.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_bytes() as usize + 128 * self.len());
        for (ino, (path, member)) in self.members.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let entry = match member {
                Member::Dir { mode } => cpio::Entry {
                    name,
                    mode: cpio::S_IFDIR | mode,
                    rdev: (0, 0),
                    data: &[],
                },
                Member::File { mode, data } => cpio::Entry {
                    name,
                    mode: cpio::S_IFREG | mode,
                    rdev: (0, 0),
                    data,
                },
                Member::Symlink { target } => cpio::Entry {
                    name,
                    mode: cpio::S_IFLNK | 0o777,
                    rdev: (0, 0),
                    data: target.as_bytes(),
                },
                Member::CharDev { mode, major, minor } => cpio::Entry {
                    name,
                    mode: cpio::S_IFCHR | mode,
                    rdev: (*major, *minor),
                    data: &[],
                },
            };
            // Inode numbers only need to differ between entries (no hard links here).
            cpio::write_entry(&mut out, ino as u32 + 1, &entry);
        }
        cpio::write_trailer(&mut out);
        out
    }

    /// The archive, compressed.
    pub fn render(&self, compression: Compression) -> Result<Vec<u8>, Error> {
        let archive = self.to_cpio();
        match compression {
            Compression::None => Ok(archive),
            Compression::Zstd => {
                let mut enc =
                    zstd::stream::Encoder::new(Vec::new(), 19).map_err(Error::Compress)?;
                enc.include_checksum(true).map_err(Error::Compress)?;
                enc.write_all(&archive).map_err(Error::Compress)?;
                enc.finish().map_err(Error::Compress)
            }
            Compression::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(3)
                    .write(Vec::new(), flate2::Compression::best());
                enc.write_all(&archive).map_err(Error::Compress)?;
                enc.finish().map_err(Error::Compress)
            }
        }
    }

    /// Builds an image back from a cpio archive (the inverse of [`Image::to_cpio`]).
    pub fn from_cpio(archive: &[u8]) -> Result<Image, Error> {
        let mut image = Image::new();
        for entry in cpio::read(archive)? {
            let path = format!("/{}", entry.name);
            let perm = entry.mode & 0o7777;
            let member = match entry.mode & cpio::S_IFMT {
                cpio::S_IFDIR => Member::Dir { mode: perm },
                cpio::S_IFREG => Member::File {
                    mode: perm,
                    data: entry.data,
                },
                cpio::S_IFLNK => Member::Symlink {
                    target: String::from_utf8(entry.data).map_err(|_| Error::Cpio {
                        offset: 0,
                        message: format!("{}: link target is not UTF-8", entry.name),
                    })?,
                },
                cpio::S_IFCHR => Member::CharDev {
                    mode: perm,
                    major: entry.rdev.0,
                    minor: entry.rdev.1,
                },
                other => {
                    return Err(Error::Cpio {
                        offset: 0,
                        message: format!("{}: unsupported file type {other:o}", entry.name),
                    })
                }
            };
            image.members.insert(path, member);
        }
        Ok(image)
    }
}

fn check_path(path: &str) -> Result<(), Error> {
    let bad = !path.starts_with('/')
        || path == "/"
        || path.ends_with('/')
        || path
            .trim_start_matches('/')
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(Error::BadPath(path.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Result<Image, Error> {
        let mut img = Image::new();
        img.insert("/usr/bin/busybox", Member::exec(b"\x7fELF fake".to_vec()))?;
        img.insert(
            "/bin",
            Member::Symlink {
                target: "usr/bin".into(),
            },
        )?;
        img.insert("/etc/passwd", Member::file("root:x:0:0::/root:/bin/sh\n"))?;
        img.insert(
            "/dev/console",
            Member::CharDev {
                mode: 0o600,
                major: 5,
                minor: 1,
            },
        )?;
        img.insert("/tmp", Member::Dir { mode: 0o1777 })?;
        img.insert("/init", Member::exec("#!/bin/sh\n"))?;
        Ok(img)
    }

    #[test]
    fn parents_are_created_and_sorted() -> Result<(), Error> {
        let img = sample()?;
        let paths: Vec<&str> = img.members().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "/bin",
                "/dev",
                "/dev/console",
                "/etc",
                "/etc/passwd",
                "/init",
                "/tmp",
                "/usr",
                "/usr/bin",
                "/usr/bin/busybox"
            ]
        );
        assert_eq!(img.get("/usr"), Some(&Member::Dir { mode: 0o755 }));
        Ok(())
    }

    #[test]
    fn cpio_round_trip() -> Result<(), Error> {
        let img = sample()?;
        let back = Image::from_cpio(&img.to_cpio())?;
        assert_eq!(back, img);
        Ok(())
    }

    #[test]
    fn rendering_is_deterministic() -> Result<(), Error> {
        let a = sample()?.render(Compression::Gzip)?;
        let b = sample()?.render(Compression::Gzip)?;
        assert_eq!(a, b);
        // gzip header: magic, deflate, no flags, mtime 0.
        assert_eq!(&a[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut cpio)
            .map_err(Error::Compress)?;
        assert_eq!(Image::from_cpio(&cpio)?, sample()?);
        let z = sample()?.render(Compression::Zstd)?;
        assert_eq!(z, sample()?.render(Compression::Zstd)?);
        let cpio = zstd::stream::decode_all(&z[..]).map_err(Error::Compress)?;
        assert_eq!(Image::from_cpio(&cpio)?, sample()?);
        Ok(())
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut img = Image::new();
        for p in ["relative", "/", "/a/../b", "/a//b", "/a/"] {
            assert!(
                matches!(img.insert(p, Member::file("")), Err(Error::BadPath(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn a_file_cannot_be_a_parent() -> Result<(), Error> {
        let mut img = Image::new();
        img.insert("/etc", Member::file("x"))?;
        assert!(matches!(
            img.insert("/etc/passwd", Member::file("")),
            Err(Error::NotADirectory { .. })
        ));
        Ok(())
    }

    /// GNU `cpio -t` reads the archive (cpio is in scripts/apt-packages).
    #[test]
    fn gnu_cpio_lists_the_archive() -> Result<(), Box<dyn std::error::Error>> {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            return Err(
                "GNU cpio is not installed: run `bash scripts/deps` (apt-get install cpio)".into(),
            );
        };
        let archive = sample()?.to_cpio();
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&archive)?;
        }
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8(out.stdout)?;
        assert!(listed.lines().any(|l| l == "usr/bin/busybox"), "{listed}");
        assert!(listed.lines().any(|l| l == "dev/console"), "{listed}");
        assert_eq!(listed.lines().count(), 10, "{listed}");
        Ok(())
    }
}
