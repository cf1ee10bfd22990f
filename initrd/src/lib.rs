//! rdeploy-initrd: builds the PXE kernel and the initramfs that carries `rdeploy-agent`.
//!
//! - [`image`]: the initramfs as a data model (`BTreeMap<path, member>`) rendered to a
//!   deterministic, compressed newc archive;
//! - [`cpio`]: the newc format, writer and reader;
//! - [`elf`]: the shared libraries and loader a binary needs (`DT_NEEDED`, `PT_INTERP`);
//! - [`modules`]: kernel modules and their dependencies from `modules.dep`;
//! - [`init`]: the generated `/init` and DHCP scripts;
//! - [`build`]: the recipe: which host files go in, and the manifest.

pub mod build;
pub mod cpio;
pub mod elf;
pub mod error;
pub mod image;
pub mod init;
pub mod modules;

pub use error::Error;
