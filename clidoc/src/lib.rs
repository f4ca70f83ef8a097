//! Man pages and shell completions generated from a binary's own clap definition, so they
//! never drift from `--help`. Each binary answers a hidden first argument:
//!
//! ```text
//! ha-agent __generate-docs DIR   # DIR/man/ha-agent.8, DIR/completions/{ha-agent.bash,_ha-agent,ha-agent.fish}
//! ```
//!
//! The packaging script (deploy/packaging/build-debs.sh) runs it on the binaries it
//! packages. Nothing here runs in normal operation.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// The hidden first argument that asks a binary for its docs.
pub const ARG: &str = "__generate-docs";

/// If the process was started as `PROGRAM __generate-docs DIR`, write the docs of `cmd`
/// (man pages in `section`) and return the exit code; otherwise `None`.
pub fn maybe_generate(cmd: impl FnOnce() -> clap::Command, section: &str) -> Option<ExitCode> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != ARG {
        return None;
    }
    let Some(dir) = argv.next() else {
        eprintln!("usage: {ARG} DIR");
        return Some(ExitCode::from(2));
    };
    Some(match generate(cmd(), section, Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{ARG}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Write `DIR/man/NAME.SECTION` (and `NAME-SUB.SECTION` for every visible subcommand) and
/// bash, zsh and fish completions under `DIR/completions`; returns the files written.
pub fn generate(cmd: clap::Command, section: &str, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut files = Vec::new();
    man_pages(&cmd, section, &man_dir, &mut files)?;
    let name = cmd.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        files.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            name.clone(),
            &comp_dir,
        )?);
    }
    Ok(files)
}

/// One page per command, subcommands first (their pages are named `parent-sub`, as
/// `Command::build` sets their display names).
fn man_pages(
    cmd: &clap::Command,
    section: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, section, dir, files)?;
    }
    let man = clap_mangen::Man::new(cmd.clone()).section(section);
    files.push(man.generate_to(dir)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> clap::Command {
        clap::Command::new("demo")
            .version("1.2.3")
            .about("A demo")
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .help("The config file"),
            )
            .subcommand(clap::Command::new("status").about("Show status"))
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn writes_pages_for_visible_subcommands_and_three_shells() {
        let dir = std::env::temp_dir().join(format!("ha-clidoc-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = generate(demo(), "8", &dir).expect("generate");
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["demo-status.8", "demo.8", "demo.bash", "_demo", "demo.fish"]
        );
        let page = std::fs::read_to_string(dir.join("man/demo.8")).expect("page");
        assert!(page.contains(".TH demo 8"), "{page}");
        assert!(page.contains("The config file"), "{page}");
        let fish = std::fs::read_to_string(dir.join("completions/demo.fish")).expect("fish");
        assert!(fish.contains("config"), "{fish}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
