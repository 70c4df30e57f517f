//! nginx config parsing over a file tree the input describes (includes,
//! globs, symlinks, deep nesting), read inside that tree as a container's
//! root. Invariants: no panic, memory under the cap, every block traced to
//! a file that was read.
#![no_main]

use agent::evidence::fsroot::FsRoot;
use agent::evidence::server_config::nginx::{self, NginxOptions};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::{Tree, arm_allocation_cap, scratch_dir};

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let tree = Tree::parse(data);
    let root = scratch_dir("nginx");
    tree.write(&root);
    let options = NginxOptions {
        prefix: None,
        root: FsRoot::Dir { path: root },
    };
    if let Ok(config) = nginx::parse_with(&tree.main_file(), &options) {
        for block in &config.blocks {
            assert!(
                config.files.contains(&block.file),
                "block from a file not read: {} not in {:?}",
                block.file.display(),
                config.files
            );
        }
    }
});
