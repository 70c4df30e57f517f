//! `agent completions SHELL` (a completion script on stdout) and the
//! hidden `agent man DIR` (one man page per command), both generated from
//! the command line's own definition by clap_complete and clap_mangen, so
//! they cannot drift from it. `cargo xtask completions` and `cargo xtask
//! man` call them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory the pages are written into (created if missing).
    pub dir: PathBuf,
}

/// Prints the completion script of `args.shell`.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "agent", &mut script);
    match super::output::print(&String::from_utf8_lossy(&script)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Writes `agent.1` and a page per subcommand (`agent-run.1`, …) into
/// `args.dir`, and lists them on stdout.
pub fn man(args: &ManArgs) -> ExitCode {
    match write_man_pages(&args.dir) {
        Ok(files) => {
            let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
            match super::output::print(&list) {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
        Err(e) => {
            eprintln!(
                "error: writing the man pages into {}: {e}",
                args.dir.display()
            );
            ExitCode::from(2)
        }
    }
}

/// The pages written (visible commands only).
pub fn write_man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, name: String| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, out)?;
        written.push(path);
        Ok(())
    };
    page(cmd.clone(), "agent".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("agent-{}", sub.get_name());
        page(sub.clone().name(name.clone()), name)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_for_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "agent.1",
                "agent-run.1",
                "agent-diagnose.1",
                "agent-completions.1"
            ]
        );
        let run = std::fs::read_to_string(dir.path().join("agent-run.1")).unwrap();
        assert!(run.contains(".TH agent-run"), "{run}");
        assert!(
            run.contains("TLSDOCTOR_JOURNAL"),
            "the env vars are documented"
        );
    }
}
