//! The body of `POST /upload` through the server's own form reader: the first line of the
//! bytes is the `Content-Type` (empty: none), the rest the body. Whatever the form holds,
//! reading it never panics, and its `file` goes on to the inventory reader.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rdeploy_server::form::{is_multipart, read_upload_form};
use rdeploy_specs::Inventory;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(content_type) = std::str::from_utf8(head) else {
        return;
    };
    let content_type = (!content_type.is_empty()).then_some(content_type);
    let result =
        rdeploy_fuzz::block_on(read_upload_form(content_type, Bytes::copy_from_slice(body)));
    let Ok(form) = result else {
        return;
    };
    if !is_multipart(content_type) {
        assert_eq!(form.file.is_some(), !body.is_empty());
    }
    if let Some((name, _)) = &form.log {
        assert!(name.ends_with(".log.gz"));
    }
    if let Some(text) = &form.file {
        let _ = Inventory::parse(text);
    }
});
