//! The server's readers of what machines send, as a library: identities, MAC addresses and
//! PXELINUX address prefixes ([`identity`]) and upload forms ([`form`]). The `rdeploy`
//! binary uses them, and so do the fuzz targets (`fuzz/`), without a server around them.

pub mod form;
pub mod identity;
