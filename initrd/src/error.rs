//! The errors of building an initramfs: each names the file or member it is about.

use std::path::PathBuf;

/// What can go wrong while building or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path given to the image is not absolute and normalised.
    #[error("{0:?}: image paths are absolute, without `.`, `..`, `//` or a trailing `/`")]
    BadPath(String),
    /// A member would be created under a file.
    #[error("{path}: its parent {parent} is not a directory in the image")]
    NotADirectory { path: String, parent: String },
    /// A malformed cpio archive.
    #[error("cpio archive, byte {offset}: {message}")]
    Cpio { offset: usize, message: String },
    /// Compression failed.
    #[error("cannot compress the archive")]
    Compress(#[source] std::io::Error),
    /// Reading a host file failed.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    /// A host binary is not an ELF file we can read.
    #[error("{}: not a readable ELF file: {message}", path.display())]
    Elf { path: PathBuf, message: String },
    /// A shared library a binary needs was not found.
    #[error("{}: needs {soname}, found in none of {}", binary.display(), dirs.join(", "))]
    MissingLibrary {
        binary: PathBuf,
        soname: String,
        dirs: Vec<String>,
    },
    /// A line of modules.dep that does not parse.
    #[error("{}:{line}: {message}", path.display())]
    ModulesDep {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A kernel module asked for by name is neither in modules.dep nor built in.
    #[error("kernel module {name}: not in {} and not built in", modules_dep.display())]
    UnknownModule { name: String, modules_dep: PathBuf },
    /// The `--ca` file holds no PEM certificate.
    #[error("{}: no certificate in it (--ca wants PEM: -----BEGIN CERTIFICATE-----)", path.display())]
    NotACertificate { path: PathBuf },
    /// A required tool is not installed.
    #[error("{tool}: not found in {} (install the package that provides it, see scripts/apt-packages)", dirs.join(":"))]
    MissingTool { tool: String, dirs: Vec<String> },
}
