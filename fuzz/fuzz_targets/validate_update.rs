//! Update validation against a stored collection: no input may panic.
#![no_main]
use std::sync::OnceLock;

use seal_tuf::testing::TestRepo;
use seal_tuf::update::{ServerKeys, StoredFiles};
use time::macros::datetime;

struct Fixture {
    repo: TestRepo,
    stored: StoredFiles,
    keys: ServerKeys,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut repo = TestRepo::new("example.com/fuzz/app", datetime!(2026-11-22 00:00:00 UTC));
        repo.delegate("targets/releases", &["releases/"]);
        let stored = repo.first_publish(&[("a", b"a")]).into_iter().collect();
        let keys = repo.server_keys(true);
        Fixture { repo, stored, keys }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    seal_tuf::testing::fuzz_validate(&f.stored, &f.keys, &f.repo.gun, datetime!(2026-11-22 12:00:00 UTC), data);
});
