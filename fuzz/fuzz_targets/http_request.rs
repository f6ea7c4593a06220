//! Raw bytes on one connection to a single in-process dev node, served by
//! its real router and connection code: no input may panic, and whatever the
//! node answers must be well-formed HTTP (HTTP/2 frames after the HTTP/2
//! preface).
#![no_main]
use std::sync::OnceLock;

use seal_node::testing::FuzzNode;

fn node() -> &'static FuzzNode {
    static NODE: OnceLock<FuzzNode> = OnceLock::new();
    NODE.get_or_init(|| {
        // One data directory per fuzzing process, left behind for inspection.
        let dir = std::env::temp_dir().join(format!("seal-fuzz-http-{}", std::process::id()));
        FuzzNode::start(&dir).expect("a dev node starts")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| seal_node::testing::fuzz_http_request(node(), data));
