//! Feeds arbitrary bytes to the DTDL parser, as one document and split into two documents.
//! Run: `cargo +nightly fuzz run parse` from the repository root.
#![no_main]

use ktwin_dtdl::{Document, ParseOptions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let strict = ParseOptions::default();
    let lenient = ParseOptions { allow_undefined_extensions: true, lenient_ids: true };
    let _ = parse(&[Document::new("fuzz.json", text)], &strict);
    // A split point lets references cross documents.
    if let Some(mid) = text.find("\n---\n") {
        let docs = [Document::new("a.json", &text[..mid]), Document::new("b.json", &text[mid + 5..])];
        let _ = parse(&docs, &lenient);
    } else {
        let _ = parse(&[Document::new("fuzz.json", text)], &lenient);
    }
});
