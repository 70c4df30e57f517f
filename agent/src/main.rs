fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut c = agent::capture::Capture::load(&Default::default())?;
        for (kind, path) in agent::capture::tls_libs::system_libraries() {
            let meta = std::fs::metadata(&path)?;
            use std::os::unix::fs::MetadataExt;
            let r = c.cover_library(kind, agent::capture::tls_libs::FileId { dev: meta.dev(), inode: meta.ino() }, &path);
            println!("{:?} {} attached={:?} skipped={:?}", kind, path.display(), r.attached, r.skipped);
        }
        Ok(())
    })
}
